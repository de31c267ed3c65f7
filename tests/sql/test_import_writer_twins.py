"""Applying an import: crm.imports.writers._PostgresWriter writes what _DjangoWriter writes.

On PostgreSQL the confirm step writes through crm/sql.py (supporter_ids_reserve
and copy_rows for new supporters, supporters_fill, supporters_history_write,
import_subscribe) after taking suppressions_lock; elsewhere through the ORM.
Each test confirms the same previewed batch both ways and compares every
row the import touches: supporters, their history, subscriptions, consent
records, audit events and the batch itself.
"""

import functools

import pytest

from crm.imports import bulk, confirm, import_confirm
from crm.models import (
    AuditEvent,
    ConsentRecord,
    ImportBatch,
    LawfulBasis,
    Subscription,
    Supporter,
    Suppression,
)
from crm.services import supporter_unsubscribe, suppression_add
from tests.factories import PartnerOrganisationFactory, SupporterFactory
from tests.sql.conftest import rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LIST = (
    "Email,First name,Last name,Postcode,Country,Phone,Organisation,Interests\n"
    "new@example.org,Nia,Okafor,E1 6AN,GB,,,r2p\n"
    "Kofi@Example.org,Kofi,Mensah,,GH,+233 30 000 0000,Ghana Peace Network,r2p;events\n"
    "bare@example.org,,,,,,,\n"
    "zoe@example.org,Zoë,Brontë,N1 9GU,,,,r2p;events\n"
    "ren@example.org,Ren,Tanaka,SE1 7PB,,,,\n"
    "tab@example.org,Tomás,Ó Briain,BT2 2AA,IE,,Quakers,events\n"
    "topic@example.org,Ted,,,,,,events\n"
    "blocked@example.org,Bea,,,,,,r2p\n"
)


@pytest.fixture
def people(interest, other_interest):
    """Zoë and Ren (no surname or postcode yet), Tomás (staff set his postcode), Ted (left
    Events), Bea (suppressed)."""
    SupporterFactory(
        email="Zoe@Example.org",
        first_name="Zoë",
        last_name="",
        postcode="",
        subscribed_to=[interest],
    )
    SupporterFactory(email="ren@example.org", first_name="Ren", last_name="", postcode="")
    SupporterFactory(
        email="tab@example.org", first_name="Tomás", last_name="Ó\tBriain", postcode="BT1 1AA"
    )
    ted = SupporterFactory(email="topic@example.org", subscribed_to=[interest, other_interest])
    supporter_unsubscribe(supporter=ted, interest=other_interest, method="email_link")
    SupporterFactory(email="blocked@example.org")
    suppression_add(email="blocked@example.org", reason="complaint")


def imported():
    """Every row an import touches, with the ids of rows a run added replaced by addresses."""
    address = dict(Supporter.objects.values_list("pk", "email"))
    of = address.get
    return {
        "supporters": rows(Supporter.objects.all()),
        "history": rows(Supporter.history.all(), id=of),
        "subscriptions": rows(Subscription.objects.all(), supporter_id=of),
        "consent records": rows(ConsentRecord.objects.all(), supporter_id=of),
        "audit events": rows(AuditEvent.objects.all(), supporter_id=of),
        "suppressions": rows(Suppression.objects.all()),
        "batches": rows(ImportBatch.objects.all()),
    }


@pytest.mark.parametrize("overwrite", [False, True], ids=["filling", "replacing"])
@pytest.mark.parametrize("chunk", [bulk.CHUNK, 2], ids=["one chunk", "chunks of two"])
def test_both_writers_import_the_same_rows(
    both_ways, partner_list, people, interest, other_interest, staff_member, monkeypatch,
    overwrite, chunk,
):  # fmt: skip
    # Large files are written a chunk at a time, in one transaction; chunks of
    # two take the same way through a few rows.
    monkeypatch.setattr(confirm, "_chunks", functools.partial(bulk._chunks, size=chunk))
    preview = partner_list(LIST, interests=[interest], overwrite=overwrite)

    def confirm_import():
        batch = import_confirm(batch_id=preview.batch.pk, actor=staff_member)
        assert batch.status == ImportBatch.Status.DONE, batch.error
        return imported()

    statement, orm = both_ways("crm", confirm_import)

    assert statement.keys() == orm.keys()
    for table in statement:
        assert statement[table] == orm[table], table
    # The comparison covers every kind of write.
    counts = preview.batch.counts
    assert (counts["new"], counts["updated"], counts["skipped"]) == (3, 3, 2)
    changed = {row["email"]: row for row in statement["supporters"]}
    assert changed["Zoe@Example.org"]["last_name"] == "Brontë"
    assert changed["tab@example.org"]["postcode"] == ("BT2 2AA" if overwrite else "BT1 1AA")
    assert {row["history_type"] for row in statement["history"]} >= {"+", "~"}
    records = statement["consent records"]
    assert sum(row["import_batch_id"] == preview.batch.pk for row in records) == 8


def test_a_partners_lawful_basis_reaches_its_consent_records_either_way(
    both_ways, partner_list, people, interest, other_interest
):
    """Imported without a staff member (the command): the records say so, and carry the basis."""
    charity = PartnerOrganisationFactory(
        slug="aegis", name="Aegis Trust", lawful_basis=LawfulBasis.LEGITIMATE_INTERESTS
    )
    preview = partner_list(LIST, interests=[interest], partner=charity)

    def confirm_import():
        batch = import_confirm(batch_id=preview.batch.pk)
        assert batch.status == ImportBatch.Status.DONE, batch.error
        return imported()

    statement, orm = both_ways("crm", confirm_import)

    assert statement == orm
    records = [row for row in statement["consent records"] if row["partner_id"] == charity.pk]
    assert records
    assert {(row["lawful_basis"], row["actor_label"]) for row in records} == {
        (LawfulBasis.LEGITIMATE_INTERESTS, "partner import command")
    }
