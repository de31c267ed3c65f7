"""Segment rules that ask about opens and clicks read the delivery history."""

import datetime

import pytest
from django.utils import timezone

from crm.models import Segment
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
