"""A supporter who signs up goes through the welcome series: each email once, in order."""

import pytest
import time_machine
from django.core import mail

from mailings.journeys.models import Enrolment, StepVisit
from mailings.models import Delivery, Mailing
from tests.journeys.conftest import sign_up, subjects_to, tick_and_send

pytestmark = pytest.mark.django_db


def test_signup_enters_the_journey_and_gets_the_welcome_at_once(live_welcome, newcomer, interest):
    """Confirming a sign-up enters the welcome series; the first email goes at the next tick."""
    sign_up(newcomer, interest)
    tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]
    enrolment = Enrolment.objects.get(supporter=newcomer)
    assert enrolment.state == Enrolment.State.ACTIVE
    assert enrolment.step.position == 2  # waiting two days
    tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]


def test_each_email_follows_its_wait_once_and_in_order(live_welcome, newcomer, interest, later):
    """The second email comes two days after the first, the third three days later; then done."""
    sign_up(newcomer, interest)
    tick_and_send()
    with time_machine.travel(later(days=1, seconds=60), tick=False):
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]
    with time_machine.travel(later(days=2, seconds=60), tick=False):
        tick_and_send()
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign", "What R2P is"]
    with time_machine.travel(later(days=5, seconds=120), tick=False):
        tick_and_send()
    with time_machine.travel(later(days=9), tick=False):
        tick_and_send()
    assert subjects_to("nina@example.org") == [
        "Welcome to the campaign",
        "What R2P is",
        "One thing you can do",
    ]
    enrolment = Enrolment.objects.get(supporter=newcomer)
    assert enrolment.state == Enrolment.State.DONE
    assert StepVisit.objects.filter(enrolment=enrolment).count() == 5
    sent = Delivery.objects.filter(supporter=newcomer, status=Delivery.Status.SENT)
    assert sent.count() == 3
    assert set(sent.values_list("round", flat=True)) == {1}


def test_supporters_who_joined_before_it_went_live_do_not_enter(
    welcome, supporter, interest, campaign_user
):
    """Only sign-ups confirmed after the journey went live enter it."""
    from mailings.journeys import services

    sign_up(supporter, interest)
    services.journey_start(journey=welcome, actor=campaign_user)
    tick_and_send()
    assert Enrolment.objects.count() == 0
    assert mail.outbox == []


def test_journey_emails_stay_out_of_the_newsletter_list_and_never_finish(
    live_welcome, newcomer, interest
):
    """A journey email is sending for as long as the journey lives, even with nothing queued."""
    from mailings import sending

    sign_up(newcomer, interest)
    tick_and_send()
    sending.deliveries_sweep()
    kinds = set(
        Mailing.objects.filter(journey_steps__journey=live_welcome).values_list("status", "kind")
    )
    assert kinds == {("sending", "journey")}
