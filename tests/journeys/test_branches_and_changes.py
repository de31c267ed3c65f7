"""Branches on what the supporter did, and steps that change tags, interests and segments."""

import pytest
import time_machine
from django.utils import timezone

from crm.models import ConsentRecord, Segment, Subscription, Tag
from mailings.journeys import services
from mailings.journeys.models import Enrolment, JourneyStep
from mailings.models import Delivery, DeliveryEvent
from tests.journeys.conftest import build_journey, email, sign_up, subjects_to, tick_and_send, wait

pytestmark = pytest.mark.django_db

PETITION = "https://example.org/petition"


@pytest.fixture
def follow_up(interest, campaign_user):
    """Petition, wait a day, branch: clicked the petition link → thank (step 5), else nudge."""
    journey = build_journey(
        [interest],
        [
            email("Sign the petition"),
            wait(1),
            (
                JourneyStep.Kind.BRANCH,
                {"condition": "clicked_link", "link_url": PETITION, "branch_to": 5},
            ),
            email("A nudge: the petition closes soon"),
            email("Thank you for signing"),
        ],
    )
    return services.journey_start(journey=journey, actor=campaign_user)


def _click(supporter, url):
    delivery = Delivery.objects.get(supporter=supporter, mailing__subject="Sign the petition")
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(opened_at=now, clicked_at=now)
    DeliveryEvent.objects.create(
        delivery=delivery,
        mailing=delivery.mailing,
        esp_name="postmark",
        dedupe_key=f"click-{delivery.pk}",
        event_type="clicked",
        timestamp=now,
        url=url,
    )


def test_who_clicked_the_petition_link_is_thanked_the_others_nudged(
    follow_up, interest, newcomer, later
):
    """The branch reads the click of the previous email: Nina clicked, Alice did not."""
    from tests import factories

    alice = factories.SupporterFactory(email="alice@example.org")
    sign_up(newcomer, interest)
    sign_up(alice, interest)
    tick_and_send()
    _click(newcomer, PETITION)
    with time_machine.travel(later(days=1, seconds=60), tick=False):
        tick_and_send()
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Sign the petition", "Thank you for signing"]
    assert subjects_to("alice@example.org") == [
        "Sign the petition",
        "A nudge: the petition closes soon",
        "Thank you for signing",
    ]


def test_a_click_on_another_link_is_not_the_petition(follow_up, interest, newcomer, later):
    sign_up(newcomer, interest)
    tick_and_send()
    _click(newcomer, "https://example.org/about")
    with time_machine.travel(later(days=1, seconds=60), tick=False):
        tick_and_send()
        tick_and_send()
    assert "A nudge: the petition closes soon" in subjects_to("nina@example.org")


def test_branch_on_opened_and_on_holding_an_interest(
    interest, other_interest, newcomer, campaign_user
):
    """ "Opened the previous email" and "is subscribed to Events" each choose the path."""
    journey = build_journey(
        [interest],
        [
            email("Hello"),
            (JourneyStep.Kind.BRANCH, {"condition": "opened", "branch_to": 4}),
            email("Did you see our hello?"),
            (
                JourneyStep.Kind.BRANCH,
                {"condition": "holds_interest", "interest": other_interest, "branch_to": 6},
            ),
            email("Come to an event"),
            (JourneyStep.Kind.END, {}),
        ],
    )
    services.journey_start(journey=journey, actor=campaign_user)
    sign_up(newcomer, interest)
    sign_up(newcomer, other_interest)
    from mailings.journeys import engine

    engine.journeys_tick()  # Hello queued; the branch waits until it is sent
    assert Enrolment.objects.get().step.position == 2
    tick_and_send()
    Delivery.objects.filter(supporter=newcomer).update(opened_at=timezone.now())
    tick_and_send()
    tick_and_send()
    assert subjects_to("nina@example.org") == ["Hello"]
    assert Enrolment.objects.get().state == Enrolment.State.DONE


def test_steps_add_a_tag_an_interest_with_its_consent_record_and_a_segment(
    interest, other_interest, newcomer, campaign_user
):
    """Tag, interest (recorded as consent naming the journey) and static segment are added."""
    tag = Tag.objects.create(name="welcomed")
    segment = Segment.objects.create(name="Welcomed", kind=Segment.Kind.STATIC)
    journey = build_journey(
        [interest],
        [
            (JourneyStep.Kind.TAG_ADD, {"tag": tag}),
            (JourneyStep.Kind.INTEREST_ADD, {"interest": other_interest}),
            (JourneyStep.Kind.SEGMENT_ADD, {"segment": segment}),
            (JourneyStep.Kind.TAG_REMOVE, {"tag": tag}),
        ],
    )
    services.journey_start(journey=journey, actor=campaign_user)
    sign_up(newcomer, interest)
    tick_and_send()
    assert Subscription.objects.filter(
        supporter=newcomer, interest=other_interest, status="subscribed"
    ).exists()
    record = ConsentRecord.objects.get(supporter=newcomer, interest=other_interest)
    assert "Welcome series" in record.actor_label
    assert segment.memberships.filter(supporter=newcomer).exists()
    assert not newcomer.tags.exists()
    assert Enrolment.objects.get().state == Enrolment.State.DONE
