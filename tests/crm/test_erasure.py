import json

import pytest
from django.core.exceptions import ValidationError

from crm.models import (
    AuditEvent,
    ConsentRecord,
    Segment,
    SegmentMembership,
    Subscription,
    Supporter,
    Suppression,
    Tag,
    email_hash,
)
from crm.services import segment_add_members, supporter_create, supporter_erase
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def erased(supporter, superuser):
    supporter.last_name = "Liddell"
    supporter.phone = "020 7946 0000"
    supporter.notes = "Met at the Westminster vigil"
    supporter.save()
    supporter.tags.add(Tag.objects.create(name="volunteer"))
    segment_add_members(
        segment=SegmentFactory(kind=Segment.Kind.STATIC),
        supporters=Supporter.objects.filter(pk=supporter.pk),
    )
    return supporter_erase(supporter=supporter, actor=superuser)


def test_erasure_leaves_nothing_personal(erased):
    row = Supporter.objects.get(pk=erased.pk)
    assert row.status == Supporter.Status.ERASED
    assert "alice" not in row.email.lower()
    assert (row.first_name, row.last_name, row.postcode, row.phone, row.notes) == ("",) * 5
    assert not ConsentRecord.objects.filter(supporter=row).exists()
    assert not Subscription.objects.filter(supporter=row).exists()
    assert not SegmentMembership.objects.filter(supporter=row).exists()
    assert not row.tags.exists()
    assert not row.history.exists()
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str).lower()
    assert "alice" not in dumped and "liddell" not in dumped


def test_erasure_suppresses_the_address_by_hash_only(erased):
    entry = Suppression.objects.get(email_hash=email_hash("Alice@Example.org"))
    assert entry.reason == Suppression.Reason.ERASURE
    assert "alice" not in json.dumps(list(Suppression.objects.values()), default=str)


def test_erased_address_cannot_be_added_again(erased):
    with pytest.raises(ValidationError, match="erased at their request"):
        supporter_create(email="ALICE@example.org")
    assert Supporter.objects.count() == 1


def test_erasure_is_recorded_and_keeps_the_row_for_counts(erased, superuser):
    assert Supporter.objects.count() == 1
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.ERASED)
    assert (event.supporter_id, event.actor) == (erased.pk, superuser)


def test_erasing_twice_is_harmless(erased, superuser):
    again = supporter_erase(supporter=erased, actor=superuser)
    assert again.status == Supporter.Status.ERASED
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.ERASED).count() == 1
