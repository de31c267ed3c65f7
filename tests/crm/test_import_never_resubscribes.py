"""An import never re-subscribes anyone who said no, or whose address must not be mailed."""

import pytest

from crm.models import ConsentRecord, Subscription, Supporter, Suppression
from crm.services import (
    consent_grant,
    supporter_erase,
    supporter_mark_undeliverable,
    supporter_unsubscribe,
    suppression_add,
)
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


def snapshot(supporter):
    supporter.refresh_from_db()
    return (
        supporter.status,
        supporter.first_name,
        supporter.last_name,
        supporter.updated_at,
        sorted(supporter.subscriptions.values_list("interest_id", "status", "updated_at")),
        supporter.consent_records.count(),
    )


def import_row(partner_list, interest, email, **options):
    preview = partner_list(
        f"Email,First name,Last name\n{email},New,Name\n",
        interests=[interest],
        confirm=True,
        **options,
    )
    (row,) = preview.plan.rows
    return row, preview.batch


def test_import_never_resubscribes_someone_unsubscribed_from_all_email(
    partner_list, interest, opted_out_supporter
):
    before = snapshot(opted_out_supporter)
    row, batch = import_row(partner_list, interest, "bob@example.org", overwrite=True)
    assert row.outcome == "skipped"
    assert row.message == "Row 2: unsubscribed from all email; left unchanged."
    assert snapshot(opted_out_supporter) == before
    assert batch.counts["skip_reasons"] == {"unsubscribed": 1}


def test_import_never_resubscribes_someone_unsubscribed_from_that_interest(
    partner_list, interest, other_interest, supporter
):
    supporter_unsubscribe(supporter=supporter, interest=interest, method="email_link")
    consent_grant(supporter=supporter, interest=other_interest, method="staff")
    before = snapshot(supporter)
    row, _ = import_row(partner_list, interest, "alice@example.org")
    assert row.outcome == "skipped"
    assert row.message.startswith("Row 2: unsubscribed from Responsibility to Protect on ")
    assert row.message.endswith("; left unchanged.")
    assert snapshot(supporter) == before


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("bounced", "Row 2: their address bounced; left unchanged."),
        ("complained", "Row 2: they marked our email as spam; left unchanged."),
    ],
)
def test_import_never_resubscribes_bounced_or_complained_supporters(
    partner_list, interest, supporter, status, message
):
    supporter_mark_undeliverable(supporter=supporter, status=status, method=status[:9])
    before = snapshot(supporter)
    row, _ = import_row(partner_list, interest, "alice@example.org")
    assert (row.outcome, row.message) == ("skipped", message)
    assert snapshot(supporter) == before


def test_import_never_brings_back_an_erased_supporter(partner_list, interest, supporter):
    supporter_erase(supporter=supporter)
    row, _ = import_row(partner_list, interest, "Alice@example.org")
    assert row.outcome == "skipped"
    assert row.message == ("Row 2: on the suppression list: erased at their request; not imported.")
    assert not Supporter.objects.with_email("alice@example.org").exists()
    assert Supporter.objects.count() == 1


def test_import_never_adds_a_suppressed_address(partner_list, interest):
    suppression_add(email="gone@example.org", reason=Suppression.Reason.COMPLAINT)
    row, batch = import_row(partner_list, interest, "GONE@example.org")
    assert row.outcome == "skipped"
    assert "on the suppression list" in row.message
    assert Supporter.objects.count() == 0
    assert batch.counts["skip_reasons"] == {"suppressed_complaint": 1}


def test_suppressed_existing_supporter_is_left_untouched(partner_list, interest, other_interest):
    held = SupporterFactory(email="held@example.org", first_name="", subscribed_to=[other_interest])
    suppression_add(email="held@example.org", reason=Suppression.Reason.STAFF)
    before = snapshot(held)
    row, _ = import_row(partner_list, interest, "held@example.org")
    assert (row.outcome, row.message) == (
        "skipped",
        "Row 2: on the suppression list (added by staff); left unchanged.",
    )
    assert snapshot(held) == before


def test_skipped_rows_write_no_consent_records(partner_list, interest, opted_out_supporter):
    _, batch = import_row(partner_list, interest, "bob@example.org")
    assert not ConsentRecord.objects.filter(import_batch=batch).exists()
    assert not Subscription.objects.filter(
        supporter=opted_out_supporter, status=Subscription.Status.SUBSCRIBED
    ).exists()
