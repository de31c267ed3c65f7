"""Segment sizes are counted on save, when a static list's members change, and by Celery beat.

The segment list shows the size last counted, so it never counts per view.
"""

import datetime

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm import tasks
from crm.models import CampaignInterest, Segment, Supporter
from crm.services import segment_add_members, segment_remove_members, segment_save
from tests.factories import SegmentFactory, SupporterFactory, made_segments

pytestmark = pytest.mark.django_db


def test_saving_a_segment_counts_its_members(supporter, interest):
    SupporterFactory(email="other@example.org")
    segment = segment_save(segment=Segment(name="R2P", rules={"interests": [interest.slug]}))
    segment.refresh_from_db()
    assert segment.size == 1
    assert segment.size_counted_at is not None


def test_staff_saving_new_rules_updates_the_size(client, membership_user, supporter):
    SupporterFactory(email="dublin@example.org", country="IE")
    segment = segment_save(segment=Segment(name="Ireland", rules={"countries": ["IE"]}))
    client.force_login(membership_user)
    client.post(
        reverse("admin:crm_segment_change", args=[segment.pk]),
        {"name": "Ireland", "description": "", "countries": ["IE", "GB"]},
    )
    segment.refresh_from_db()
    assert segment.size == 2


def test_adding_and_removing_members_keeps_the_size(membership_user):
    segment = segment_save(segment=Segment(name="Lobby day", kind=Segment.Kind.STATIC))
    for n in range(3):
        SupporterFactory(email=f"lobbyist{n}@example.org")
    segment_add_members(segment=segment, supporters=Supporter.objects.all(), actor=membership_user)
    segment.refresh_from_db()
    assert segment.size == 3

    segment_remove_members(
        segment=segment,
        supporters=Supporter.objects.filter(email="lobbyist0@example.org"),
        actor=membership_user,
    )
    segment.refresh_from_db()
    assert segment.size == 2


def test_the_periodic_count_counts_each_segment_once(supporter, interest):
    """Sizes gone stale as supporters joined are brought up to date, one COUNT per segment."""
    everyone = SegmentFactory(name="Everyone")
    r2p = SegmentFactory(name="R2P", rules={"interests": [interest.slug]})
    lobby = SegmentFactory(name="Lobby", kind=Segment.Kind.STATIC)
    SupporterFactory(email="late@example.org")

    with CaptureQueriesContext(connection) as queries:
        tasks.count_segment_sizes()

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == Segment.objects.count()  # the three, and the ready-made one
    sizes = dict(made_segments().values_list("name", "size"))
    assert sizes == {everyone.name: 2, r2p.name: 1, lobby.name: 0}


def test_counting_is_not_an_edit(supporter):
    """A mailing compares its segments' updated_at with its own; counting must not move it."""
    segment = SegmentFactory(name="Everyone")
    before = Segment.objects.get(pk=segment.pk).updated_at
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        tasks.count_segment_sizes()
    segment.refresh_from_db()
    assert segment.updated_at == before
    assert segment.size == 1
    assert segment.size_counted_at > before + datetime.timedelta(minutes=59)


def test_a_segment_that_cannot_be_evaluated_is_counted_as_having_no_size(supporter):
    old = CampaignInterest.objects.create(slug="old", name="Old campaign")
    segment = SegmentFactory(rules={"interests": ["old"]})
    Segment.objects.filter(pk=segment.pk).update(size=40, size_counted_at=timezone.now())
    old.delete()

    tasks.count_segment_sizes()

    segment.refresh_from_db()
    assert segment.size is None
    assert segment.size_counted_at is not None


def test_beat_counts_segment_sizes_every_ten_minutes():
    entry = settings.CELERY_BEAT_SCHEDULE["crm-count-segment-sizes"]
    assert entry == {"task": "crm.tasks.count_segment_sizes", "schedule": 600.0}
    assert tasks.count_segment_sizes.name == entry["task"]
