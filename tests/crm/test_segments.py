import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.models import CampaignInterest, Segment, Supporter, Tag
from crm.segments import SegmentRuleError, validate_rules
from crm.services import segment_add_members, segment_remove_members, supporter_unsubscribe
from tests.factories import PartnerOrganisationFactory, SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(interest, other_interest, partner):
    """A handful of supporters who differ in exactly one way each."""
    londoner = SupporterFactory(
        email="lon@example.org", postcode="SW1A 2AA", subscribed_to=[interest]
    )
    leeds = SupporterFactory(
        email="leeds@example.org", postcode="LS1 4AP", subscribed_to=[interest]
    )
    events_only = SupporterFactory(
        email="events@example.org", postcode="SW1P 3BU", subscribed_to=[other_interest]
    )
    from_partner = SupporterFactory(
        email="partner@example.org", postcode="E1 6AN", partner=partner, subscribed_to=[interest]
    )
    irish = SupporterFactory(email="ie@example.org", country="IE", postcode="D02 X285")
    lapsed = SupporterFactory(
        email="lapsed@example.org", postcode="SW1A 1AA", subscribed_to=[interest]
    )
    supporter_unsubscribe(supporter=lapsed, method="email_link")
    return {
        "londoner": londoner,
        "leeds": leeds,
        "events_only": events_only,
        "from_partner": from_partner,
        "irish": irish,
        "lapsed": lapsed,
    }


def members(segment):
    return set(segment.supporters().values_list("email", flat=True))


def test_rule_segment_matches_interest_and_postcode_prefix(cast):
    segment = SegmentFactory(rules={"interests": ["r2p"], "postcode_prefixes": ["sw1"]})
    assert members(segment) == {"lon@example.org"}


def test_rule_segment_by_partner_country_and_status(cast):
    assert members(SegmentFactory(rules={"partners": ["waging-peace"]})) == {"partner@example.org"}
    assert members(SegmentFactory(rules={"countries": ["IE"]})) == {"ie@example.org"}
    assert members(SegmentFactory(rules={"statuses": ["unsubscribed"]})) == {"lapsed@example.org"}


def test_rule_segment_by_tag_and_joining_dates(cast):
    tag = Tag.objects.create(name="volunteer")
    cast["leeds"].tags.add(tag)
    assert members(SegmentFactory(rules={"tags": ["volunteer"]})) == {"leeds@example.org"}

    Supporter.objects.filter(pk=cast["irish"].pk).update(
        created_at=timezone.now() - datetime.timedelta(days=400)
    )
    cutoff = (timezone.localdate() - datetime.timedelta(days=30)).isoformat()
    assert members(SegmentFactory(rules={"joined_before": cutoff})) == {"ie@example.org"}
    assert "ie@example.org" not in members(SegmentFactory(rules={"joined_after": cutoff}))


def test_unsubscribed_interest_no_longer_matches(cast, interest):
    segment = SegmentFactory(rules={"interests": ["r2p"]})
    supporter_unsubscribe(supporter=cast["leeds"], interest=interest, method="email_link")
    assert "leeds@example.org" not in members(segment)


def test_counting_a_rule_segment_is_one_query(cast):
    segment = SegmentFactory(
        rules={"interests": ["r2p", "events"], "countries": ["GB"], "tags": ["x"], "partners": []}
    )
    segment.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        segment.supporters().count()
    # One query for validating slugs against interests, one for the count itself.
    assert len([q for q in queries if "COUNT" in q["sql"].upper()]) == 1
    assert len(queries) <= 3


def test_static_segment_members_added_and_removed(cast, membership_user):
    segment = SegmentFactory(kind=Segment.Kind.STATIC)
    added = segment_add_members(
        segment=segment,
        supporters=Supporter.objects.filter(email__in=["lon@example.org", "ie@example.org"]),
        actor=membership_user,
    )
    again = segment_add_members(
        segment=segment, supporters=Supporter.objects.filter(email="lon@example.org")
    )
    assert (added, again) == (2, 0)
    assert members(segment) == {"lon@example.org", "ie@example.org"}

    removed = segment_remove_members(
        segment=segment, supporters=Supporter.objects.filter(email="ie@example.org")
    )
    assert removed == 1
    assert members(segment) == {"lon@example.org"}


def test_members_cannot_be_added_by_hand_to_a_rule_segment(cast):
    segment = SegmentFactory(rules={"countries": ["GB"]})
    with pytest.raises(ValidationError, match="Only static segments"):
        segment_add_members(segment=segment, supporters=Supporter.objects.all())


def test_rules_naming_a_deleted_interest_are_refused_clearly(cast):
    CampaignInterest.objects.create(slug="old-campaign", name="Old campaign")
    segment = SegmentFactory(rules={"interests": ["old-campaign"]})
    CampaignInterest.objects.filter(slug="old-campaign").delete()
    with pytest.raises(SegmentRuleError, match="'old-campaign' does not exist"):
        segment.supporters()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"colour": ["red"]}, "Unknown rule 'colour'"),
        ({"countries": ["XX"]}, "Unknown country code 'XX'"),
        ({"statuses": ["sleeping"]}, "Unknown status 'sleeping'"),
        ({"joined_after": "yesterday"}, "YYYY-MM-DD"),
        ({"joined_after": "2025-02-01", "joined_before": "2025-01-01"}, "must not be later"),
        ({"opened_within_days": 0}, "whole number of days"),
        ({"partners": ["nobody"]}, "Partner organisation 'nobody' does not exist"),
    ],
)
def test_bad_rules_get_a_clear_message(rules, message):
    with pytest.raises(SegmentRuleError, match=message):
        validate_rules(rules)


@pytest.mark.postgres
def test_rule_segment_on_postgresql_uses_one_query_with_exists(cast):
    """On PostgreSQL the whole definition becomes one SQL statement with EXISTS subqueries."""
    PartnerOrganisationFactory(slug="aegis-trust")
    segment = SegmentFactory(
        rules={
            "interests": ["r2p"],
            "partners": ["waging-peace", "aegis-trust"],
            "countries": ["GB"],
        }
    )
    sql = str(segment.supporters().query).upper()
    assert "EXISTS" in sql
    assert members(segment) == {"partner@example.org"}
