"""Reverting an import undoes what it created that nothing has touched since."""

import pytest

from crm import imports
from crm.imports import ImportRefused
from crm.models import AuditEvent, ConsentRecord, ImportBatch, Subscription, Supporter
from crm.services import segment_add_members, supporter_unsubscribe
from tests.factories import SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db

LIST = "Email,First name\nann@example.org,Ann\nbo@example.org,Bo\nalice@example.org,Alice\n"


@pytest.fixture
def imported(partner_list, interest, other_interest, supporter):
    """Ann and Bo are new; Alice (already subscribed to R2P) gains Events."""
    return partner_list(LIST, interests=[interest, other_interest], confirm=True).batch


def test_revert_deletes_untouched_new_supporters_with_their_records(imported, membership_user):
    undone = imports.import_revert(batch=imported, actor=membership_user)
    assert undone["deleted_supporters"] == 2
    assert set(Supporter.objects.values_list("email", flat=True)) == {"alice@example.org"}
    assert not Supporter.history.model.objects.filter(email="ann@example.org").exists()
    imported.refresh_from_db()
    assert imported.status == ImportBatch.Status.REVERTED
    assert imported.reverted_by == membership_user
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.IMPORT_REVERTED)
    assert event.detail["deleted_supporters"] == 2
    assert "example.org" not in str(event.detail)


def test_revert_withdraws_the_subscriptions_it_added_to_existing_supporters(
    imported, supporter, interest, other_interest, membership_user
):
    imports.import_revert(batch=imported, actor=membership_user)
    current = dict(supporter.subscriptions.values_list("interest__slug", "status"))
    assert current == {"r2p": Subscription.Status.SUBSCRIBED}
    history = list(
        supporter.consent_records.filter(interest=other_interest)
        .order_by("created_at", "id")
        .values_list("action", "method", "import_batch_id", "actor_label")
    )
    assert history == [
        ("granted", "partner_import", imported.pk, "partner import command"),
        ("withdrawn", "partner_import", imported.pk, f"import {imported.pk} reverted"),
    ]


def test_revert_keeps_new_supporters_someone_touched_since(imported, interest, other_interest):
    ann = Supporter.objects.with_email("ann@example.org").get()
    ann.first_name = "Annie"
    ann.save()
    bo = Supporter.objects.with_email("bo@example.org").get()
    segment_add_members(
        segment=SegmentFactory(kind="static"), supporters=Supporter.objects.filter(pk=bo.pk)
    )
    undone = imports.import_revert(batch=imported)
    assert undone["deleted_supporters"] == 0
    assert undone["kept_supporters"] == 2
    # Kept, but their subscriptions from the import are withdrawn: the grants
    # stay in their history and a withdrawal naming the batch follows each.
    assert not Subscription.objects.filter(supporter__in=[ann, bo]).exists()
    assert ann.consent_records.filter(action="withdrawn").count() == 2
    for person in (ann, bo):
        history = list(
            person.consent_records.order_by("created_at", "id").values_list(
                "action", "method", "import_batch_id", "actor_label"
            )
        )
        assert history == [
            ("granted", "partner_import", imported.pk, "partner import command"),
            ("granted", "partner_import", imported.pk, "partner import command"),
            ("withdrawn", "partner_import", imported.pk, f"import {imported.pk} reverted"),
            ("withdrawn", "partner_import", imported.pk, f"import {imported.pk} reverted"),
        ]


def test_revert_keeps_a_subscription_the_supporter_changed_since(
    imported, supporter, other_interest
):
    supporter_unsubscribe(supporter=supporter, interest=other_interest, method="email_link")
    undone = imports.import_revert(batch=imported)
    subscription = supporter.subscriptions.get(interest=other_interest)
    assert subscription.status == Subscription.Status.UNSUBSCRIBED
    assert undone["kept_subscriptions"] == 1
    assert not supporter.consent_records.filter(
        method="partner_import", action="withdrawn"
    ).exists()


def test_revert_keeps_every_consent_record_of_supporters_it_keeps(imported, supporter):
    before = set(ConsentRecord.objects.filter(supporter=supporter).values_list("pk", flat=True))
    imports.import_revert(batch=imported)
    after = set(ConsentRecord.objects.filter(supporter=supporter).values_list("pk", flat=True))
    assert before < after
    assert ConsentRecord.objects.filter(pk__in=after - before).get().action == "withdrawn"


def test_a_reverted_list_can_be_imported_again(imported, partner_list, interest, other_interest):
    imports.import_revert(batch=imported)
    again = partner_list(LIST, interests=[interest, other_interest], confirm=True)
    assert again.batch.counts["new"] == 2
    assert again.batch.counts["updated"] == 1
    assert Supporter.objects.count() == 3


def test_revert_is_refused_twice_and_for_unconfirmed_batches(imported, partner_list, interest):
    imports.import_revert(batch=imported)
    state = ConsentRecord.objects.count()
    with pytest.raises(ImportRefused, match="Only a completed import can be reverted"):
        imports.import_revert(batch=imported)
    assert ConsentRecord.objects.count() == state
    preview = partner_list("Email\nzed@example.org\n", interests=[interest])
    with pytest.raises(ImportRefused, match="“Previewed”"):
        imports.import_revert(batch=preview.batch)


def test_revert_leaves_supporters_that_existed_before_the_import(imported, supporter):
    SupporterFactory(email="other@example.org")
    imports.import_revert(batch=imported)
    assert Supporter.objects.filter(pk=supporter.pk).exists()
    assert Supporter.objects.with_email("other@example.org").exists()
