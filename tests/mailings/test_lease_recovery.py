"""A worker that dies mid-send: its leased deliveries are recovered, never sent twice."""

import datetime
from collections import Counter

import pytest
from django.utils import timezone

from mailings import sending, services, throttle
from mailings.models import Delivery, Mailing
from mailings.sending import esp_calls
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands in for kill -9: nothing after this point runs."""


@pytest.fixture(autouse=True)
def _clean_rate_state(fresh_cache):
    throttle.clear()


@pytest.fixture
def readers(interest):
    return [SupporterFactory(email=f"r{n}@example.org", subscribed_to=[interest]) for n in range(4)]


@pytest.fixture
def mailing(newsletter, readers, campaign_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)
    newsletter.refresh_from_db()
    return newsletter


def die(*args, **kwargs):
    raise WorkerKilled


def after_lease():
    return timezone.now() + datetime.timedelta(seconds=301)


def statuses(mailing):
    return Counter(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))


def test_worker_killed_before_calling_the_esp(monkeypatch, postmark_esp, mailing, readers):
    monkeypatch.setattr(esp_calls, "_dispatch", die)
    with pytest.raises(WorkerKilled):
        sending.mailing_send_batches(mailing_id=mailing.pk)
    monkeypatch.undo()
    assert statuses(mailing) == {"sending": 4}

    done = sending.deliveries_sweep(now=after_lease())

    assert done["recovered"] == 4
    assert statuses(mailing) == {"queued": 4}
    sending.mailing_send_batches(mailing_id=mailing.pk)
    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})


def test_worker_killed_after_the_esp_accepted(monkeypatch, postmark_esp, mailing, readers):
    """The ESP has the messages but we never recorded it: ask the ESP, do not resend."""
    monkeypatch.setattr(esp_calls, "_record_sent", die)
    with pytest.raises(WorkerKilled):
        sending.mailing_send_batches(mailing_id=mailing.pk)
    monkeypatch.undo()
    accepted = postmark_esp.recipients()

    sending.deliveries_sweep(now=after_lease())
    sending.mailing_send_batches(mailing_id=mailing.pk)

    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    recovered = Delivery.objects.filter(mailing=mailing, supporter__email__in=accepted)
    assert {d.status for d in recovered} == {"sent"}
    assert all(d.esp_message_id for d in recovered)
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT


def test_worker_killed_with_the_call_lost_before_the_esp(
    monkeypatch, postmark_esp, mailing, readers
):
    monkeypatch.setattr(esp_calls, "_send_one", die)
    with pytest.raises(WorkerKilled):
        sending.mailing_send_batches(mailing_id=mailing.pk)
    monkeypatch.undo()
    assert postmark_esp.recipients() == []

    sending.deliveries_sweep(now=after_lease())
    sending.mailing_send_batches(mailing_id=mailing.pk)

    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})


def test_batch_killed_after_the_esp_accepted(monkeypatch, mailgun_esp, mailing, readers):
    monkeypatch.setattr(esp_calls, "_record_statuses", die)
    with pytest.raises(WorkerKilled):
        sending.mailing_send_batches(mailing_id=mailing.pk)
    monkeypatch.undo()

    sending.deliveries_sweep(now=after_lease())
    sending.mailing_send_batches(mailing_id=mailing.pk)

    assert Counter(mailgun_esp.recipients()) == Counter({r.email: 1 for r in readers})
    assert statuses(mailing) == {"sent": 4}


def test_unknown_fate_is_never_resent_by_itself(monkeypatch, settings, mailing, readers):
    """Through an ESP that cannot be asked, a dispatched delivery is marked unknown."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr(esp_calls, "_record_sent", die)
    with pytest.raises(WorkerKilled):
        sending.mailing_send_batches(mailing_id=mailing.pk)
    monkeypatch.undo()

    sending.deliveries_sweep(now=after_lease())

    assert statuses(mailing) == {"unknown": 4}
    assert "could not say" in Delivery.objects.filter(mailing=mailing).first().error
    sending.deliveries_sweep(now=after_lease())
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT


def test_staff_may_choose_to_resend_unknown(
    monkeypatch, settings, mailing, readers, campaign_user, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    Delivery.objects.filter(mailing=mailing).update(status=Delivery.Status.UNKNOWN)
    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.SENT)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert services.deliveries_resend_unknown(mailing=mailing, actor=campaign_user) == 4

    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENDING
    assert statuses(mailing) == {"queued": 4}
    assert len(queued) == settings.RALLY_SEND_TASKS


def test_live_worker_keeps_its_lease(postmark_esp, mailing):
    """A lease that has not expired is left alone by the sweeper."""
    ids = sending.deliveries_claim(mailing_id=mailing.pk, limit=10, worker="alive")

    done = sending.deliveries_sweep(now=timezone.now() + datetime.timedelta(seconds=60))

    assert done["recovered"] == 0
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"sending"}


def test_two_workers_never_claim_the_same_delivery(mailing):
    first = sending.deliveries_claim(mailing_id=mailing.pk, limit=3, worker="a")
    second = sending.deliveries_claim(mailing_id=mailing.pk, limit=3, worker="b")

    assert len(first) == 3
    assert len(second) == 1
    assert not set(first) & set(second)


def test_paused_mailing_is_not_claimed(mailing, campaign_user):
    services.mailing_pause(mailing=mailing, actor=campaign_user)

    assert sending.deliveries_claim(mailing_id=mailing.pk, limit=10, worker="a") == []
    assert sending.mailing_send_batches(mailing_id=mailing.pk) == "stopped"


def test_sweeper_restarts_a_mailing_whose_tasks_were_lost(
    mailing, settings, django_capture_on_commit_callbacks
):
    """After a broker restart no task is left: the sweeper queues senders again."""
    Mailing.objects.filter(pk=mailing.pk).update(
        heartbeat_at=timezone.now() - datetime.timedelta(minutes=5)
    )

    with django_capture_on_commit_callbacks(execute=False) as queued:
        done = sending.deliveries_sweep()

    assert done["restarted"] == [mailing.pk]
    assert len(queued) == settings.RALLY_SEND_TASKS


def test_sweeper_leaves_a_busy_mailing_alone(mailing, django_capture_on_commit_callbacks):
    Mailing.objects.filter(pk=mailing.pk).update(heartbeat_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as queued:
        done = sending.deliveries_sweep()

    assert done["restarted"] == []
    assert queued == []
