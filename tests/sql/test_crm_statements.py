"""Each statement of crm/sql.py, run on PostgreSQL, does what its docstring says.

The equivalence tests beside this file compare the statements with their ORM
twins through the services; these call each statement directly, with small data.
"""

import datetime
import threading

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from crm import sql
from crm.imports.columns import PERSON_FIELDS
from crm.imports.writers import HISTORY_COLUMNS, HISTORY_FIELDS
from crm.models import (
    ConsentRecord,
    ImportBatch,
    LawfulBasis,
    Subscription,
    Supporter,
    Suppression,
    email_hash,
)
from crm.services import consent_grant, supporter_unsubscribe, suppression_add
from tests.factories import CampaignInterestFactory, SupporterFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

MOMENT = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)


def in_another_session(work):
    """Run `work` on a connection of its own and roll it back; return "done" or "waited".

    "waited": it needed a lock this session holds (it gives up after 200 ms).
    """
    outcome = []

    def run():
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '200ms'")
                work()
                transaction.set_rollback(True)
            outcome.append("done")
        except OperationalError as error:
            outcome.append("waited" if "lock timeout" in str(error) else error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


# One-click unsubscribe


def test_subscriptions_withdraw_leaves_the_topics_in_scope_and_says_which(
    supporter, interest, other_interest
):
    never = CampaignInterestFactory(slug="never", name="Never joined")
    consent_grant(supporter=supporter, interest=other_interest, method="staff")
    supporter_unsubscribe(supporter=supporter, interest=other_interest, method="email_link")

    def withdraw():
        return sql.subscriptions_withdraw(
            supporter=supporter,
            scope=("i.id = ANY(%s)", [[interest.pk, other_interest.pk, never.pk]]),
            method=ConsentRecord.Method.ONE_CLICK,
            mailing=None,
        )

    found = withdraw()

    # In the order pages list topics; only the one still held was left now.
    assert [(topic.slug, topic.withdrawn) for topic in found] == [
        ("events", False),
        ("never", False),
        ("r2p", True),
    ]
    assert Subscription.objects.get(supporter=supporter, interest=interest).status == "unsubscribed"
    withdrawals = ConsentRecord.objects.filter(supporter=supporter, action="withdrawn")
    assert sorted(withdrawals.values_list("interest__slug", "method")) == [
        ("events", "email_link"),
        ("r2p", "one_click"),
    ]
    assert [topic.withdrawn for topic in withdraw()] == [False, False, False]
    assert withdrawals.count() == 2


# Imports: the state check


def test_import_state_fingerprint_changes_only_with_what_the_file_names(interest):
    named = SupporterFactory(email="Named@example.org", subscribed_to=[interest])
    unnamed = SupporterFactory(email="unnamed@example.org", subscribed_to=[interest])
    keys = ["named@example.org", "absent@example.org"]
    hashes = [email_hash(key) for key in keys]

    def fingerprint():
        return sql.import_state_fingerprint(
            keys,
            hashes,
            fields=("id", "email", "status", *PERSON_FIELDS),
            with_updated=True,
            separators=("\x1f", "\x1e", "\x1d"),
        )

    first = fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    assert fingerprint() == first

    supporter_unsubscribe(supporter=unnamed, method="email_link")
    suppression_add(email="unnamed@example.org", reason="complaint")
    assert fingerprint() == first

    changes = [
        lambda: supporter_unsubscribe(supporter=named, interest=interest, method="email_link"),
        lambda: Supporter.objects.filter(pk=named.pk).update(updated_at=timezone.now()),
        lambda: suppression_add(email="absent@example.org", reason="hard_bounce"),
    ]
    seen = {first}
    for change in changes:
        change()
        seen.add(fingerprint())
    assert len(seen) == 1 + len(changes)


def test_suppressions_lock_holds_new_suppressions_back_but_not_readers_or_other_imports(db):
    with transaction.atomic():
        sql.suppressions_lock()

        assert in_another_session(lambda: list(Suppression.objects.all())) == "done"
        # Two imports may confirm at once.
        assert in_another_session(sql.suppressions_lock) == "done"
        assert (
            in_another_session(
                lambda: suppression_add(email="late@example.org", reason="complaint")
            )
            == "waited"
        )


# Imports: the bulk writes


def test_supporter_ids_reserve_takes_new_ids_from_the_supporter_sequence(db):
    existing = SupporterFactory()

    ids = sql.supporter_ids_reserve(3)

    assert len(set(ids)) == 3
    assert min(ids) > existing.pk
    assert SupporterFactory().pk > max(ids)
    assert sql.supporter_ids_reserve(0) == []


def test_copy_rows_writes_each_value_as_its_columns_type(partner):
    columns = (
        "id", "email", "email_hash", *PERSON_FIELDS, "partner_id", "source", "status", "notes",
        "link_version", "created_at", "updated_at", "import_batch_id",
    )  # fmt: skip
    ids = sql.supporter_ids_reserve(2)
    people = [
        ("Nia@Example.org", "Nia", "Okafor", "E1 6AN", "GB", "", "", partner.pk),
        ("tab@example.org", "Tomás", "Ó\tBriain", "", "IE", "+353 1 000", "Quakers", None),
    ]
    shared = ("partner_import", "active", "", 1, MOMENT, MOMENT, None)
    rows = [
        (pk, email, email_hash(email), *values, *shared)
        for pk, (email, *values) in zip(ids, people, strict=True)
    ]

    sql.copy_rows(Supporter._meta.db_table, columns, rows)

    copied = Supporter.objects.filter(pk__in=ids).order_by("pk").values_list(*columns)
    assert list(copied) == rows


def test_supporters_fill_fills_the_fields_given_and_keeps_the_rest(db):
    nia = SupporterFactory(last_name="", postcode="", country="GB", phone="")
    tomas = SupporterFactory(last_name="Briain", postcode="", phone="")
    untouched = SupporterFactory(last_name="", postcode="")
    later = MOMENT + datetime.timedelta(minutes=5)

    with transaction.atomic():
        sql.supporters_fill(
            [(nia.pk, {"last_name": "Okafor"}), (tomas.pk, {"postcode": "N1", "country": "IE"})],
            fields=PERSON_FIELDS,
            now=MOMENT,
        )
        # An import fills a chunk at a time in one transaction: the first
        # chunk's changes must not be applied again with the second's.
        sql.supporters_fill([(untouched.pk, {"phone": "0"})], fields=PERSON_FIELDS, now=later)

    people = Supporter.objects.in_bulk([nia.pk, tomas.pk, untouched.pk])
    fields = ("last_name", "postcode", "country", "phone", "updated_at")
    assert [getattr(people[nia.pk], name) for name in fields] == ["Okafor", "", "GB", "", MOMENT]
    assert [getattr(people[tomas.pk], name) for name in fields] == [
        "Briain",
        "N1",
        "IE",
        "",
        MOMENT,
    ]
    assert [getattr(people[untouched.pk], name) for name in fields] == ["", "", "GB", "0", later]


def test_supporters_history_write_records_the_supporters_as_they_are(staff_member, partner):
    first = SupporterFactory(first_name="Nia", partner=partner)
    second = SupporterFactory(first_name="Kofi")
    left_out = SupporterFactory()
    history = Supporter.history.model.objects.filter(history_change_reason="partner import 7")

    sql.supporters_history_write(
        [first.pk, second.pk],
        fields=HISTORY_FIELDS,
        columns=HISTORY_COLUMNS,
        kind="~",
        now=MOMENT,
        reason="partner import 7",
        actor_id=staff_member.pk,
    )

    written = history.order_by("id").values_list(*HISTORY_COLUMNS)
    expected = Supporter.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
    assert list(written) == [
        (*state, MOMENT, "partner import 7", "~", staff_member.pk)
        for state in expected.values_list("pk", *HISTORY_FIELDS)
    ]
    assert not history.filter(id=left_out.pk).exists()


def test_import_subscribe_subscribes_with_the_partners_lawful_basis(
    partner, interest, other_interest, staff_member
):
    partner.lawful_basis = LawfulBasis.LEGITIMATE_INTERESTS
    partner.save()
    batch = ImportBatch.objects.create(partner=partner, file_name="list.csv", file_hash="0" * 64)
    nia, kofi = SupporterFactory.create_batch(2)
    grants = [
        (nia.pk, interest.pk, partner.pk),
        (nia.pk, other_interest.pk, partner.pk),
        (kofi.pk, interest.pk, partner.pk),
    ]

    sql.import_subscribe(grants, batch_id=batch.pk, actor_id=staff_member.pk, label="", now=MOMENT)

    subscriptions = Subscription.objects.values_list(
        "supporter_id", "interest_id", "status", "subscribed_at", "unsubscribed_at", "updated_at"
    )
    assert sorted(subscriptions) == sorted(
        (pk, topic, "subscribed", MOMENT, None, MOMENT) for pk, topic, _ in grants
    )
    records = ConsentRecord.objects.values_list(
        "supporter_id", "interest_id", "action", "method", "lawful_basis", "partner_id",
        "import_batch_id", "actor_id", "created_at",
    )  # fmt: skip
    assert sorted(records) == sorted(
        (pk, topic, "granted", "partner_import", "legitimate_interests", partner.pk, batch.pk,
         staff_member.pk, MOMENT)
        for pk, topic, partner_id in grants
    )  # fmt: skip


def test_import_subscribe_refuses_a_grant_without_its_partner(supporter, other_interest):
    """Without a partner there is no lawful basis, and a consent record needs one."""
    with pytest.raises(IntegrityError, match="lawful_basis"), transaction.atomic():
        sql.import_subscribe(
            [(supporter.pk, other_interest.pk, 10**9)],
            batch_id=None,
            actor_id=None,
            label="partner import command",
            now=MOMENT,
        )


# The admin's list counts


def test_table_row_estimate_is_the_row_count_after_analyze(db):
    SupporterFactory.create_batch(7)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Supporter._meta.db_table}")

    estimate = sql.table_row_estimate(connection, Supporter)

    assert estimate == Supporter.objects.count() == 7
