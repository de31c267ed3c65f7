"""Who enters a journey: each trigger, the journey's topics, and the entry rule."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from crm.models import ConsentRecord, Segment
from crm.services import consent_grant, segment_add_members
from mailings.journeys import engine, services
from mailings.journeys.models import Enrolment, Journey
from tests import factories
from tests.journeys.conftest import build_journey, email, sign_up, subjects_to, tick_and_send

pytestmark = pytest.mark.django_db


def _live(journey, user):
    return services.journey_start(journey=journey, actor=user)


def test_subscribing_to_an_interest_enters_its_journey(interest, other_interest, campaign_user):
    """ "Subscribes to Events" enters those who subscribe to it, not those who join other topics."""
    journey = build_journey(
        [interest, other_interest],
        [email("Events near you")],
        trigger=Journey.Trigger.INTEREST,
        trigger_interest=other_interest,
    )
    _live(journey, campaign_user)
    ed = factories.SupporterFactory(email="ed@example.org", subscribed_to=[other_interest])
    rae = factories.SupporterFactory(email="rae@example.org", subscribed_to=[interest])
    tick_and_send()
    assert subjects_to(ed.email) == ["Events near you"]
    assert subjects_to(rae.email) == []


def test_import_from_a_partner_enters_its_journey(interest, partner, campaign_user):
    """Supporters whose consent came with a partner's list enter; others do not."""
    journey = build_journey(
        [interest],
        [email("Welcome from Waging Peace")],
        trigger=Journey.Trigger.PARTNER,
        trigger_partner=partner,
    )
    _live(journey, campaign_user)
    pia = factories.SupporterFactory(email="pia@example.org")
    consent_grant(
        supporter=pia,
        interest=interest,
        method=ConsentRecord.Method.PARTNER_IMPORT,
        partner=partner,
        lawful_basis="consent",
    )
    factories.SupporterFactory(email="sol@example.org", subscribed_to=[interest])
    tick_and_send()
    assert Enrolment.objects.get().supporter == pia
    assert subjects_to("pia@example.org") == ["Welcome from Waging Peace"]


def test_everyone_in_a_segment_enters_and_so_does_whoever_joins(interest, campaign_user):
    """A segment journey takes its members when it goes live and whoever is added later."""
    segment = Segment.objects.create(name="Lapsed", kind=Segment.Kind.STATIC)
    ann = factories.SupporterFactory(email="ann@example.org", subscribed_to=[interest])
    ben = factories.SupporterFactory(email="ben@example.org", subscribed_to=[interest])
    segment_add_members(segment=segment, supporters=type(ann).objects.filter(pk=ann.pk))
    journey = build_journey(
        [interest], [email("We miss you")], trigger=Journey.Trigger.SEGMENT, trigger_segment=segment
    )
    _live(journey, campaign_user)
    tick_and_send()
    assert subjects_to(ann.email) == ["We miss you"]
    segment_add_members(segment=segment, supporters=type(ben).objects.filter(pk=ben.pk))
    tick_and_send()
    tick_and_send()
    assert subjects_to(ben.email) == ["We miss you"]
    assert subjects_to(ann.email) == ["We miss you"]  # once ever


def test_a_year_after_joining(interest, campaign_user):
    """ "365 days after joining" enters supporters on their anniversary, not before."""
    journey = build_journey(
        [interest],
        [email("A year with us")],
        trigger=Journey.Trigger.ANNIVERSARY,
        trigger_days=365,
    )
    _live(journey, campaign_user)
    joined = timezone.now() - timedelta(days=364)
    amy = factories.SupporterFactory(email="amy@example.org", subscribed_to=[interest])
    type(amy).objects.filter(pk=amy.pk).update(created_at=joined)
    tick_and_send()
    assert subjects_to(amy.email) == []
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1), tick=False):
        tick_and_send()
    assert subjects_to(amy.email) == ["A year with us"]


def test_only_subscribers_to_the_journeys_topics_enter(interest, other_interest, campaign_user):
    """A sign-up for another topic does not enter a journey about R2P."""
    journey = build_journey([interest], [email("Welcome")])
    _live(journey, campaign_user)
    tom = factories.SupporterFactory(email="tom@example.org")
    sign_up(tom, other_interest)
    tick_and_send()
    assert Enrolment.objects.count() == 0


def test_once_ever_means_once(live_welcome, newcomer, interest, other_interest):
    """Signing up again later does not start the welcome series again."""
    sign_up(newcomer, interest)
    tick_and_send()
    with time_machine.travel(timezone.now() + timedelta(days=30), tick=False):
        sign_up(newcomer, other_interest)
        tick_and_send()
    assert Enrolment.objects.filter(supporter=newcomer).count() == 1


def test_again_after_n_days_gives_each_entry_its_own_emails(
    interest, other_interest, campaign_user
):
    """With "again after 7 days", a second sign-up 8 days on is round 2, with its own email."""
    journey = build_journey(
        [interest], [email("Thanks for signing")], entry=Journey.Entry.AGAIN, reentry_days=7
    )
    _live(journey, campaign_user)
    kai = factories.SupporterFactory(email="kai@example.org")
    sign_up(kai, interest)
    tick_and_send()
    with time_machine.travel(timezone.now() + timedelta(days=3), tick=False):
        sign_up(kai, other_interest)
        tick_and_send()
    assert subjects_to(kai.email) == ["Thanks for signing"]
    with time_machine.travel(timezone.now() + timedelta(days=8), tick=False):
        consent_grant(
            supporter=kai,
            interest=factories.CampaignInterestFactory(slug="sudan"),
            method=ConsentRecord.Method.SIGNUP_FORM,
        )
        tick_and_send()
    assert subjects_to(kai.email) == ["Thanks for signing", "Thanks for signing"]
    assert sorted(Enrolment.objects.values_list("round", flat=True)) == [1, 2]


def test_two_ticks_at_once_claim_different_supporters(interest, campaign_user):
    """Claims never overlap: what one tick holds another does not get."""
    journey = build_journey([interest], [email("Welcome")])
    _live(journey, campaign_user)
    for n in range(5):
        sign_up(factories.SupporterFactory(email=f"p{n}@example.org"), interest)
    engine.journey_enrol(journey=journey)
    first, _ = engine.enrolments_claim(journey_id=journey.pk, limit=3)
    second, _ = engine.enrolments_claim(journey_id=journey.pk, limit=3)
    assert len(first) == 3
    assert len(second) == 2
    assert not set(first) & set(second)
