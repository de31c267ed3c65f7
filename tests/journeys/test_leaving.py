"""Whoever unsubscribes, is suppressed, bounces or is erased leaves every journey at once."""

import pytest
import time_machine

from crm.models import Supporter, Suppression
from crm.services import (
    supporter_erase,
    supporter_mark_undeliverable,
    supporter_unsubscribe,
    suppression_add,
)
from mailings.journeys import engine
from mailings.journeys.models import Enrolment
from tests.journeys.conftest import sign_up, subjects_to, tick_and_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def nina_in_journey(live_welcome, newcomer, interest):
    sign_up(newcomer, interest)
    tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]
    return newcomer


def _left(supporter):
    enrolment = Enrolment.objects.get(supporter=supporter)
    assert enrolment.state == Enrolment.State.LEFT
    return enrolment.left_reason


def _no_more_email(later):
    with time_machine.travel(later(days=10), tick=False):
        tick_and_send()
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]


def test_unsubscribing_from_all_email_leaves_at_the_next_tick(nina_in_journey, later):
    """An unsubscribe leaves the journey at the next tick, long before the wait ends."""
    supporter_unsubscribe(supporter=nina_in_journey, method="email_link")
    tick_and_send()
    assert _left(nina_in_journey) == Enrolment.Reason.UNSUBSCRIBED
    _no_more_email(later)


def test_unsubscribing_from_the_journeys_topic_leaves_it(nina_in_journey, interest, later):
    """Leaving the journey's only interest is leaving the journey."""
    supporter_unsubscribe(supporter=nina_in_journey, interest=interest, method="email_link")
    tick_and_send()
    assert _left(nina_in_journey) == Enrolment.Reason.TOPIC
    _no_more_email(later)


def test_a_suppressed_address_leaves(nina_in_journey, later, campaign_user):
    """Adding the address to the suppression list takes the supporter out."""
    suppression_add(
        email=nina_in_journey.email, reason=Suppression.Reason.STAFF, actor=campaign_user
    )
    tick_and_send()
    assert _left(nina_in_journey) == Enrolment.Reason.SUPPRESSED
    _no_more_email(later)


def test_a_bounce_leaves(nina_in_journey, later):
    """A hard bounce marks the supporter undeliverable, and out they go."""
    supporter_mark_undeliverable(
        supporter=nina_in_journey, status=Supporter.Status.BOUNCED, method="bounce"
    )
    tick_and_send()
    assert _left(nina_in_journey) == Enrolment.Reason.BOUNCED
    _no_more_email(later)


def test_erasure_leaves_inside_its_own_transaction(nina_in_journey, campaign_user, later):
    """Erasing a supporter takes them out of every journey at once, before any tick."""
    supporter_erase(supporter=nina_in_journey, actor=campaign_user)
    assert _left(nina_in_journey) == Enrolment.Reason.ERASED
    _no_more_email(later)


def test_someone_unmailable_when_due_leaves_even_if_no_look_saw_it(nina_in_journey, later):
    """A change the incremental look missed is still caught when the supporter is due."""
    supporter_unsubscribe(supporter=nina_in_journey, method="email_link")
    with time_machine.travel(later(days=3), tick=False):
        # Only the batch's own check runs: no incremental look at who changed.
        engine.journey_advance_batch(journey=Enrolment.objects.get().journey)
    assert _left(nina_in_journey) == Enrolment.Reason.UNSUBSCRIBED
    _no_more_email(later)
