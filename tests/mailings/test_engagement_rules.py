"""Segment rules that ask about opens and clicks read the delivery history."""

import datetime

import pytest
from django.utils import timezone

from crm.models import Segment
from crm.segments import describe_rules
from tests.factories import DeliveryFactory, MailingFactory, SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def opened(days_ago=None, clicked_days_ago=None):
    supporter = SupporterFactory()
    now = timezone.now()
    DeliveryFactory(
        supporter=supporter,
        mailing=MailingFactory(),
        last_opened_at=(days_ago is not None and now - datetime.timedelta(days=days_ago)) or None,
        opened_at=(days_ago is not None and now - datetime.timedelta(days=days_ago)) or None,
        last_clicked_at=(
            clicked_days_ago is not None and now - datetime.timedelta(days=clicked_days_ago)
        )
        or None,
    )
    return supporter


def test_opened_within_days_rule():
    recent, old = opened(days_ago=3), opened(days_ago=40)
    never = SupporterFactory()
    segment = SegmentFactory(kind=Segment.Kind.RULES, rules={"opened_within_days": 30})

    members = set(segment.supporters())

    assert recent in members
    assert old not in members
    assert never not in members


def test_clicked_within_days_rule():
    clicker, opener = opened(days_ago=2, clicked_days_ago=2), opened(days_ago=2)
    segment = SegmentFactory(kind=Segment.Kind.RULES, rules={"clicked_within_days": 7})

    assert set(segment.supporters()) == {clicker}
    assert opener not in set(segment.supporters())


def long_ago(supporter, days=400):
    supporter.created_at = timezone.now() - datetime.timedelta(days=days)
    supporter.save(update_fields=["created_at"])
    return supporter


def test_quiet_for_days_finds_who_joined_long_ago_and_never_engaged_since():
    quiet = long_ago(opened(days_ago=500))
    never_opened = long_ago(SupporterFactory())
    reader = long_ago(opened(days_ago=30))
    clicker = long_ago(opened(days_ago=500, clicked_days_ago=100))
    newcomer = SupporterFactory()  # joined today: no time to be quiet yet
    segment = SegmentFactory(kind=Segment.Kind.RULES, rules={"quiet_for_days": 365})

    members = set(segment.supporters())

    assert members >= {quiet, never_opened}
    assert not members & {reader, clicker, newcomer}


def test_every_install_has_the_ready_made_re_permission_segment():
    segment = Segment.objects.get(name="Not opened or clicked in 12 months")
    quiet = long_ago(SupporterFactory())

    assert segment.rules == {"quiet_for_days": 365}
    assert quiet in set(segment.supporters())
    assert describe_rules(segment.rules) == [
        "Joined over 365 days ago and neither opened nor clicked any mailing since"
    ]
