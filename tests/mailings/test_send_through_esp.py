"""Sending through Anymail's real Postmark and Mailgun backends to the ESP simulator."""

import datetime
from collections import Counter

import pytest
import time_machine
from django.utils import timezone

from mailings import sending, services, throttle
from mailings.models import Delivery, Mailing
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_rate_state(fresh_cache):
    throttle.clear()
    yield
    throttle.clear()


@pytest.fixture
def readers(interest):
    return [
        SupporterFactory(
            email=f"reader{n}@example.org", first_name=f"Reader{n}", subscribed_to=[interest]
        )
        for n in range(6)
    ]


def start(mailing, user, django_capture_on_commit_callbacks):
    """Start sending without running the queued tasks; return the mailing, resolved."""
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=mailing, actor=user)
    services.mailing_start(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing


def drain(mailing):
    return sending.mailing_send_batches(mailing_id=mailing.pk)


def statuses(mailing):
    return Counter(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))


@pytest.fixture
def started(newsletter, readers, campaign_user, django_capture_on_commit_callbacks):
    def go():
        return start(newsletter, campaign_user, django_capture_on_commit_callbacks)

    return go


def test_postmark_gets_each_reader_once_with_delivery_metadata(postmark_esp, started, readers):
    mailing = started()
    assert drain(mailing) == "idle"

    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    record = postmark_esp.last(to=readers[0].email)
    delivery = Delivery.objects.get(mailing=mailing, supporter=readers[0])
    assert record.metadata == {"mailing_id": str(mailing.pk), "delivery_id": str(delivery.pk)}
    assert record.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert delivery.esp_message_id == record.message_id
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT


def test_mailgun_batch_is_one_call_personalised_per_reader(mailgun_esp, started, readers):
    mailing = started()
    drain(mailing)

    assert mailgun_esp.call_count == 1
    assert Counter(mailgun_esp.recipients()) == Counter({r.email: 1 for r in readers})
    for reader in readers:
        record = mailgun_esp.last(to=reader.email)
        delivery = Delivery.objects.get(mailing=mailing, supporter=reader)
        assert record.text.startswith(f"Dear {reader.first_name},")
        assert f"Dear {reader.first_name}," in record.html
        assert record.metadata["delivery_id"] == str(delivery.pk)
        assert record.header("List-Unsubscribe").startswith("<https://rally.example.org/unsub")
        assert record.header("List-Id") == '"Responsibility to Protect" <r2p.rally.example.org>'
    links = {mailgun_esp.last(to=r.email).header("List-Unsubscribe") for r in readers}
    assert len(links) == len(readers), "each reader has a link of their own"


def test_server_error_is_retried_later_with_backoff(postmark_esp, started, readers):
    mailing = started()
    postmark_esp.fail_next(2, status=503)

    drain(mailing)

    waiting = Delivery.objects.filter(mailing=mailing, status=Delivery.Status.QUEUED)
    assert waiting.count() == 2
    assert all(d.retry_at > timezone.now() and "503" in d.error for d in waiting)
    assert len(postmark_esp.recipients()) == 4
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=1)):
        drain(mailing)
    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    assert statuses(mailing) == {"sent": 6}


def test_429_waits_as_asked_without_using_up_attempts(postmark_esp, started, readers):
    mailing = started()
    postmark_esp.rate_limit_next(1, retry_after=30)

    drain(mailing)

    held = Delivery.objects.get(mailing=mailing, status=Delivery.Status.QUEUED)
    assert held.attempts == 0
    assert held.retry_at >= timezone.now() + datetime.timedelta(seconds=29)
    assert throttle.paused_for() > 25


def test_refused_address_fails_with_the_reason_and_the_rest_go(postmark_esp, started, readers):
    postmark_esp.set_faults(invalid=[readers[2].email])
    mailing = started()

    drain(mailing)

    refused = Delivery.objects.get(mailing=mailing, supporter=readers[2])
    assert refused.status == Delivery.Status.FAILED
    assert refused.error.startswith("The ESP refused")
    assert statuses(mailing) == {"sent": 5, "failed": 1}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT


def test_mailgun_batch_refused_for_one_address_is_split_to_send_the_rest(
    mailgun_esp, started, readers
):
    mailgun_esp.set_faults(invalid=[readers[4].email])
    mailing = started()

    drain(mailing)

    assert statuses(mailing) == {"sent": 5, "failed": 1}
    assert Delivery.objects.get(mailing=mailing, supporter=readers[4]).status == "failed"
    assert Counter(mailgun_esp.recipients()) == Counter(
        {r.email: 1 for r in readers if r != readers[4]}
    )


def test_recipient_limit_per_call_is_respected_by_splitting(mailgun_esp, started, readers):
    mailgun_esp.set_faults(recipient_limit=2)
    mailing = started()

    drain(mailing)

    assert statuses(mailing) == {"sent": 6}
    assert Counter(mailgun_esp.recipients()) == Counter({r.email: 1 for r in readers})


def test_timeout_counts_as_transient(settings, postmark_esp, started, readers):
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.3}
    mailing = started()
    postmark_esp.hang_next(1, seconds=1)

    drain(mailing)

    held = Delivery.objects.get(mailing=mailing, status=Delivery.Status.QUEUED)
    assert held.retry_at is not None
    assert "no answer" in held.error


def test_one_message_that_keeps_failing_gives_up_after_the_attempt_limit(
    settings, postmark_esp, started, readers
):
    settings.RALLY_SEND_MAX_ATTEMPTS = 2
    mailing = started()
    postmark_esp.fail_next(1, status=503)
    drain(mailing)  # five accepted, one refused
    postmark_esp.fail_always(503)  # ...and that one keeps failing

    for minutes in (20, 40, 60):
        with time_machine.travel(timezone.now() + datetime.timedelta(minutes=minutes)):
            drain(mailing)

    assert statuses(mailing) == {"sent": 5, "failed": 1}
    failed = Delivery.objects.get(mailing=mailing, status=Delivery.Status.FAILED)
    assert failed.error.startswith("Gave up after 2 attempts")
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT


def test_an_esp_outage_delays_the_mailing_but_gives_up_on_nobody(
    settings, postmark_esp, started, readers
):
    settings.RALLY_SEND_MAX_ATTEMPTS = 2
    postmark_esp.fail_always(503)
    mailing = started()
    began = timezone.now()

    for minutes in (0, 20, 40, 60):
        with time_machine.travel(began + datetime.timedelta(minutes=minutes)):
            assert drain(mailing) == "waiting"
            # One try per reader, then every worker holds back: no hammering.
            assert postmark_esp.call_count == len(readers) * (minutes // 20 + 1)

    assert statuses(mailing) == {"queued": 6}
    assert set(Delivery.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {0}
    since, reason = throttle.outage()
    assert abs(since - began.timestamp()) < 5
    assert reason == "ESP unavailable (503)."

    postmark_esp.fail_always(None)
    with time_machine.travel(began + datetime.timedelta(minutes=62)):
        assert drain(mailing) == "idle"
    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    assert statuses(mailing) == {"sent": 6}
    assert throttle.outage() is None


def test_one_batch_that_keeps_failing_is_not_taken_for_an_outage(
    settings, mailgun_esp, started, readers
):
    settings.RALLY_SEND_MAX_ATTEMPTS = 2
    mailgun_esp.fail_always(503)
    mailing = started()

    for minutes in (0, 20, 40):
        with time_machine.travel(timezone.now() + datetime.timedelta(minutes=minutes)):
            drain(mailing)

    assert mailgun_esp.call_count == 2  # all six readers in one call, tried twice
    assert statuses(mailing) == {"failed": 6}
    assert throttle.outage() is None


def test_while_the_esp_is_down_the_task_waits_for_it_and_the_sweeper_leaves_it_be(
    postmark_esp, started, readers
):
    """The task holds back at least a second for a down ESP, and resumes when it is back.

    The clock stands still while the ESP is down: on a busy machine, time
    passing between the failed send and the question "how long to wait?"
    would otherwise shave the second below one.
    """
    postmark_esp.fail_always(503)
    mailing = started()
    with time_machine.travel(timezone.now(), tick=False):
        assert drain(mailing) == "waiting"

        wait = sending.mailing_resume_in(mailing_id=mailing.pk)

        assert 1 <= wait <= sending.RETRY_WAIT_MAX_SECONDS
        mailing.refresh_from_db()
        assert mailing.heartbeat_at == timezone.now() + datetime.timedelta(seconds=wait)
        # The successor the task queued is due: the sweeper starts no more senders.
        assert sending.deliveries_sweep()["restarted"] == []
        postmark_esp.fail_always(None)
        with time_machine.travel(timezone.now() + datetime.timedelta(seconds=wait + 1)):
            assert drain(mailing) == "idle"
    assert statuses(mailing) == {"sent": 6}


def test_send_rate_is_respected(settings, postmark_esp, started, readers):
    settings.RALLY_SEND_RATE = 4  # messages per second, shared by all workers
    mailing = started()

    began = timezone.now()
    drain(mailing)
    seconds = (timezone.now() - began).total_seconds()

    assert statuses(mailing) == {"sent": 6}
    # One second's burst, then 4/s: six messages take at least a quarter of a second more.
    assert seconds >= 0.25


@pytest.mark.parametrize("esp_fixture", ["postmark_esp", "mailgun_esp"])
def test_a_message_that_cannot_be_built_fails_alone(
    request, monkeypatch, esp_fixture, started, readers
):
    sink = request.getfixturevalue(esp_fixture)
    from mailings import emails

    build = emails.PreparedMailing.message

    def fussy(self, supporter, **kwargs):
        if supporter.email == readers[1].email:
            raise ValueError("cannot encode this name")
        return build(self, supporter, **kwargs)

    monkeypatch.setattr(emails.PreparedMailing, "message", fussy)
    monkeypatch.setattr(
        emails.PreparedMailing, "batch_message", lambda *a, **k: (_ for _ in ()).throw(ValueError())
    )
    mailing = started()

    drain(mailing)

    assert statuses(mailing) == {"sent": 5, "failed": 1}
    failed = Delivery.objects.get(mailing=mailing, status="failed")
    assert failed.supporter == readers[1]
    assert "could not be built" in failed.error
    assert readers[1].email not in sink.recipients()
