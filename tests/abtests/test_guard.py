"""The deliverability guard pauses a mailing whose bounces or complaints run high."""

from collections import Counter

import pytest
from django.test import override_settings

from mailings import guard, sending, services
from mailings.models import Delivery, Mailing
from tests.abtests.conftest import drain, make_readers, post_bounces, sent_deliveries, start
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def hundred(interest):
    return make_readers(interest, 100)


@pytest.fixture
def newsletter_to_hundred(interest, hundred, settings):
    settings.RALLY_SEND_BATCH_SIZE = 20
    return MailingFactory(name="Partner list welcome", interests=[interest])


def send_one_batch(mailing):
    """Claim and send one batch, as a sending task does between its guard checks."""
    ids = sending.deliveries_claim(mailing_id=mailing.pk, limit=20, worker=sending.worker_name())
    sending.deliveries_send(mailing=mailing, ids=ids)


def test_hard_bounces_from_the_esp_pause_sending_and_say_what_to_check(
    client, postmark_esp, newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks
):
    """6 of the first 20 bounce: already over 5% of the audience of 100, so sending stops."""
    mailing = start(newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks)
    send_one_batch(mailing)
    post_bounces(client, sent_deliveries(mailing)[:6])

    assert drain(mailing) == "stopped"

    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.PAUSED
    assert mailing.guard_tripped == "bounces"
    assert mailing.last_error.startswith(
        "The deliverability guard paused sending: 6 of the 20 messages sent so far hard bounced: "
        "already 6.0% of the first 100 (the limit is 5%)."
    )
    assert "partner list" in mailing.last_error
    assert "SPF, DKIM and DMARC" in mailing.last_error
    assert postmark_esp.count() == 20
    assert Delivery.objects.filter(mailing=mailing, status=Delivery.Status.QUEUED).count() == 80


def test_five_bounces_in_a_hundred_are_within_the_limit(
    client, postmark_esp, newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks
):
    mailing = start(newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks)
    send_one_batch(mailing)
    post_bounces(client, sent_deliveries(mailing)[:5])

    assert drain(mailing) == "idle"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT
    assert postmark_esp.count() == 100


def test_resuming_after_the_guard_sends_the_rest_once_and_is_not_paused_again(
    client, postmark_esp, newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks
):
    mailing = start(newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks)
    send_one_batch(mailing)
    post_bounces(client, sent_deliveries(mailing)[:6])
    drain(mailing)

    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_resume(mailing=mailing, actor=campaign_user)
    assert drain(mailing) == "idle"

    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT
    assert mailing.last_error == ""
    assert mailing.guard_tripped == "bounces"  # remembered: staff overruled it
    counts = Counter(postmark_esp.recipients())
    assert len(counts) == 100
    assert set(counts.values()) == {1}


def test_cancelling_after_the_guard_sends_nothing_more(
    client, postmark_esp, newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks
):
    mailing = start(newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks)
    send_one_batch(mailing)
    post_bounces(client, sent_deliveries(mailing)[:6])
    drain(mailing)

    services.mailing_cancel(mailing=mailing, actor=campaign_user)

    assert drain(mailing) == "stopped"
    assert postmark_esp.count() == 20
    statuses = Counter(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))
    assert statuses == {"sent": 20, "cancelled": 80}


def test_two_spam_complaints_pause_sending(
    client, postmark_esp, newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks
):
    mailing = start(newsletter_to_hundred, campaign_user, django_capture_on_commit_callbacks)
    send_one_batch(mailing)
    post_bounces(client, sent_deliveries(mailing)[:2], kind="SpamComplaint")

    assert drain(mailing) == "stopped"
    mailing.refresh_from_db()
    assert mailing.guard_tripped == "complaints"
    assert "2 of the 20 messages sent so far complained" in mailing.last_error


def test_the_sweeper_pauses_a_mailing_whose_senders_are_idle(
    client, postmark_esp, tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    """An A/B test's senders are idle while it waits for its winner; the sweeper still looks."""
    mailing = start(tested, campaign_user, django_capture_on_commit_callbacks)
    drain(mailing)
    post_bounces(client, sent_deliveries(mailing)[:3])

    assert sending.deliveries_sweep()["guarded"] == [mailing.pk]
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.PAUSED


@pytest.mark.parametrize(
    ("sent", "bounced", "complained", "recipients", "tripped"),
    [
        (200, 50, 0, 50_000, ""),  # 50 of the first 1,000 is exactly 5%: not past it
        (200, 51, 0, 50_000, "bounces"),  # past 5% of the first 1,000 already
        (20_000, 999, 0, 50_000, ""),  # 4.995% of everything sent
        (20_000, 1001, 0, 50_000, "bounces"),
        (1000, 0, 1, 50_000, ""),  # one complaint in 1,000 is 0.1%: at the limit
        (1000, 0, 2, 50_000, "complaints"),
        (10, 3, 0, 40, "bounces"),  # a small mailing is judged on its whole audience
    ],
)
def test_thresholds(sent, bounced, complained, recipients, tripped):
    kind, _ = guard.judge(sent=sent, bounced=bounced, complained=complained, recipients=recipients)
    assert kind == tripped


def test_a_threshold_of_zero_turns_the_check_off():
    with override_settings(RALLY_GUARD_BOUNCE_PERCENT=0):
        assert guard.judge(sent=100, bounced=100, complained=0, recipients=100) == ("", "")


def test_a_journey_email_is_guarded_like_a_newsletter(client, interest, campaign_user, settings):
    """A journey's email sends through the same engine: its bounces pause that email alone."""
    from mailings.journeys import services as journey_services
    from tests.journeys.conftest import build_journey, email, sign_up, tick_and_send

    settings.RALLY_GUARD_WINDOW = 20
    journey = build_journey([interest], [email("Welcome to the campaign")])
    journey_services.journey_start(journey=journey, actor=campaign_user)
    for number in range(30):
        sign_up(SupporterFactory(email=f"joiner{number}@example.org"), interest)
    tick_and_send()
    welcome = Mailing.objects.get(kind=Mailing.Kind.JOURNEY)
    assert len(sent_deliveries(welcome)) == 30

    post_bounces(client, sent_deliveries(welcome)[:3])
    assert drain(welcome) == "stopped"

    welcome.refresh_from_db()
    assert welcome.status == Mailing.Status.PAUSED
    assert welcome.guard_tripped == "bounces"
    assert "3 of the 30 messages sent hard bounced (10.0%; the limit is 5%)" in welcome.last_error
