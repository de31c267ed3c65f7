"""Each statement of mailings/sql.py does what its docstring says.

Those that run on every database run here on both; those only PostgreSQL
runs (the claim and ANALYZE) are marked `postgres`. tests/sql/test_claim_twins.py
compares the claim with its ORM twin.
"""

import datetime
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from crm import sql as crm_sql
from crm.models import Supporter
from crm.services import suppression_add
from mailings import sql
from mailings.models import Delivery, DeliveryEvent, Mailing
from mailings.tokens import LINK_FIELDS
from mailings.tracking import INSERT_COLUMNS
from tests.factories import CampaignInterestFactory, DeliveryFactory, MailingFactory

pytestmark = pytest.mark.django_db

MOMENT = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


# Link reads


def test_supporter_for_link_loads_the_fields_asked_and_whether_suppressed(supporter):
    (found,) = sql.supporter_for_link(supporter.pk, LINK_FIELDS)

    assert found == supporter
    assert (found.email, found.first_name, found.link_version) == ("alice@example.org", "Alice", 1)
    # SQLite answers EXISTS with 0 or 1, PostgreSQL with a boolean.
    assert not found.suppressed
    assert {"phone", "notes", "email_hash"} <= found.get_deferred_fields()

    suppression_add(email="ALICE@example.org", reason="complaint")
    assert sql.supporter_for_link(supporter.pk, LINK_FIELDS)[0].suppressed
    assert sql.supporter_for_link(10**9, LINK_FIELDS) == []


def test_interests_with_choices_lists_topics_in_page_order_with_the_supporters_choices(
    supporter, interest, other_interest
):
    hidden = CampaignInterestFactory(slug="hidden", name="Hidden", is_public=False, position=9)
    mailing = MailingFactory(interests=[interest, hidden])

    public = sql.interests_with_choices(supporter_id=supporter.pk)
    sent_for = sql.interests_with_choices(supporter_id=supporter.pk, mailing_id=mailing.pk)

    assert [(topic.slug, topic.subscribed) for topic in public] == [
        ("events", False),
        ("r2p", True),
    ]
    assert [(topic.slug, topic.subscribed) for topic in sent_for] == [
        ("r2p", True),
        ("hidden", False),
    ]


# Sending


def claimable_mailing(deliveries):
    mailing = MailingFactory(status=Mailing.Status.SENDING)
    return mailing, DeliveryFactory.create_batch(deliveries, mailing=mailing)


@pytest.mark.postgres
def test_deliveries_claim_leases_the_lowest_queued_ids(db):
    mailing, queued = claimable_mailing(4)
    until = MOMENT + 5 * MINUTE

    ids = sql.deliveries_claim(
        mailing_id=mailing.pk, limit=3, worker="worker-1", until=until, now=MOMENT
    )

    assert ids == sorted(delivery.pk for delivery in queued)[:3]
    leased = Delivery.objects.filter(pk__in=ids)
    assert set(leased.values_list("status", "claimed_by", "claimed_until", "attempts")) == {
        ("sending", "worker-1", until, 1)
    }
    assert sql.deliveries_claim(
        mailing_id=mailing.pk, limit=3, worker="worker-2", until=until, now=MOMENT
    ) == [max(delivery.pk for delivery in queued)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_deliveries_claim_skips_rows_another_worker_has_locked():
    """Two workers never wait for, or get, the same delivery."""
    mailing, queued = claimable_mailing(3)
    first = min(delivery.pk for delivery in queued)
    locked, release = threading.Event(), threading.Event()

    def another_worker():
        with transaction.atomic():
            Delivery.objects.select_for_update().get(pk=first)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=another_worker)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            ids = sql.deliveries_claim(
                mailing_id=mailing.pk, limit=10, worker="worker-1", until=MOMENT, now=MOMENT
            )
    finally:
        release.set()
        holder.join()

    assert ids == sorted(delivery.pk for delivery in queued if delivery.pk != first)


def test_deliveries_insert_audience_queues_the_audience_once(newsletter, subscribers, supporter):
    already = DeliveryFactory(mailing=newsletter, supporter=subscribers[0], status="sent")
    DeliveryFactory(supporter=subscribers[1])  # another mailing's
    query, params = newsletter.audience().values("pk").query.sql_with_params()

    sql.deliveries_insert_audience(query, params, mailing_id=newsletter.pk, now=MOMENT)

    deliveries = Delivery.objects.filter(mailing=newsletter)
    assert set(deliveries.values_list("supporter_id", flat=True)) == {
        person.pk for person in [*subscribers, supporter]
    }
    assert deliveries.get(pk=already.pk).status == "sent"
    assert set(
        deliveries.exclude(pk=already.pk).values_list("status", "attempts", "created_at")
    ) == {("queued", 0, MOMENT)}


@pytest.mark.postgres
def test_deliveries_analyze_brings_the_planners_row_count_up_to_date(db):
    DeliveryFactory.create_batch(6)

    sql.deliveries_analyze()

    assert crm_sql.table_row_estimate(connection, Delivery) == 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_tables_analyze_if_never_analyses_only_large_tables_never_analysed():
    big, small = "sql_test_never_analysed_big", "sql_test_never_analysed_small"

    def reltuples(table):
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
            return cursor.fetchone()[0]

    def live_rows_counted():
        # Sessions report row counts to the statistics when idle, at most once a second.
        for _ in range(50):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = %s", [big]
                )
                if cursor.fetchone()[0] > 1000:
                    return True
                cursor.execute("SELECT pg_stat_force_next_flush()")
            time.sleep(0.1)
        return False

    try:
        with connection.cursor() as cursor:
            for table, count in ((big, 1500), (small, 10)):
                # Autovacuum must not analyse them first.
                cursor.execute(
                    f"CREATE TABLE {table} WITH (autovacuum_enabled = false) "
                    f"AS SELECT generate_series(1, {count}) AS n"
                )
        assert live_rows_counted()
        assert reltuples(big) == reltuples(small) == -1

        sql.tables_analyze_if_never([big, small])

        assert (reltuples(big), reltuples(small)) == (1500, -1)
        # Analysed once: it is left to autovacuum from now on.
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {big} SELECT generate_series(1, 500)")
        sql.tables_analyze_if_never([big, small])
        assert reltuples(big) == 1500
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {big}, {small}")


def test_audience_tables_name_the_tables_an_audience_reads():
    assert Supporter._meta.db_table in sql.audience_tables()


def leased(mailing, *, worker, until, **state):
    return DeliveryFactory(
        mailing=mailing, status="sending", claimed_by=worker, claimed_until=until, **state
    )


def test_deliveries_dispatch_marks_only_what_the_worker_still_holds(newsletter):
    later, earlier = MOMENT + MINUTE, MOMENT - MINUTE
    held = [leased(newsletter, worker="worker-1", until=later) for _ in range(2)]
    taken = leased(newsletter, worker="worker-2", until=later)
    expired = leased(newsletter, worker="worker-1", until=earlier)
    queued = DeliveryFactory(mailing=newsletter)
    renewed = MOMENT + 5 * MINUTE

    dispatched = sql.deliveries_dispatch(
        [delivery.pk for delivery in [*held, taken, expired, queued]],
        now=MOMENT,
        until=renewed,
        worker="worker-1",
    )

    assert dispatched == {delivery.pk for delivery in held}
    states = dict(Delivery.objects.values_list("pk", "dispatched_at").filter(mailing=newsletter))
    assert {pk for pk, when in states.items() if when == MOMENT} == dispatched
    assert set(
        Delivery.objects.filter(pk__in=dispatched).values_list("claimed_until", flat=True)
    ) == {renewed}
    assert Delivery.objects.get(pk=expired.pk).claimed_until == earlier


def test_deliveries_mark_sent_stores_each_message_id(newsletter):
    sending = [
        leased(newsletter, worker="worker-1", until=MOMENT, retry_at=MOMENT, error="Timed out")
        for _ in range(2)
    ]
    other = leased(newsletter, worker="worker-1", until=MOMENT)

    sql.deliveries_mark_sent([(sending[0].pk, "msg-<a>"), (sending[1].pk, "msg-'b'")], now=MOMENT)

    columns = ("status", "sent_at", "claimed_until", "retry_at", "error", "esp_message_id")
    states = Delivery.objects.in_bulk([delivery.pk for delivery in [*sending, other]])
    assert [tuple(getattr(states[d.pk], name) for name in columns) for d in sending] == [
        ("sent", MOMENT, None, None, "", "msg-<a>"),
        ("sent", MOMENT, None, None, "", "msg-'b'"),
    ]
    assert states[other.pk].status == "sending"


# Tracking


def event(delivery_id, key, kind="delivered", at=MOMENT):
    return (delivery_id, "postmark", key, kind, at, "", "", "")


def test_events_insert_keeps_each_event_once_and_counts_the_new(newsletter):
    delivery = DeliveryFactory(mailing=newsletter)
    received = MOMENT + MINUTE

    first = sql.events_insert(
        [event(delivery.pk, "a"), event(delivery.pk, "b", "opened"), event(10**9, "c")],
        INSERT_COLUMNS,
        now=received,
    )
    again = sql.events_insert(
        [event(delivery.pk, "b", "opened"), event(delivery.pk, "d", "clicked")],
        INSERT_COLUMNS,
        now=received,
    )

    assert (first, again) == (2, 1)
    stored = DeliveryEvent.objects.order_by("dedupe_key").values_list(
        "dedupe_key", "event_type", "mailing_id", "pending", "received_at", "timestamp"
    )
    assert list(stored) == [
        (key, kind, newsletter.pk, True, received, MOMENT)
        for key, kind in (("a", "delivered"), ("b", "opened"), ("d", "clicked"))
    ]


def test_deliveries_set_times_sets_each_deliverys_own_time(newsletter):
    first, second, untouched = DeliveryFactory.create_batch(3, mailing=newsletter)

    sql.deliveries_set_times("opened_at", {first.pk: MOMENT, second.pk: MOMENT + MINUTE})

    opened = dict(Delivery.objects.values_list("pk", "opened_at"))
    assert opened == {first.pk: MOMENT, second.pk: MOMENT + MINUTE, untouched.pk: None}
    assert timezone.is_aware(opened[first.pk])
