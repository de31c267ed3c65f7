"""
Every raw SQL statement of mailings.

Table and column names come from the models' _meta; values are always
parameters. Each statement is here because docs/performance.md shows it pays:

- Link reads: supporter_for_link (mailings.tokens) and interests_with_choices
  (mailings.selfservice), built with crm.sql's helpers. The same reads as ORM
  querysets cost five times the CPU, more than the rest of the page
  (bench/link_reads_bench.py).
- Sending: deliveries_claim (the PostgreSQL twin of the ORM claim in
  mailings.sending.claims, FOR UPDATE SKIP LOCKED), deliveries_insert_audience
  (one INSERT … SELECT for the whole audience), deliveries_dispatch and
  deliveries_mark_sent (one UPDATE per batch), and the ANALYZE calls that keep
  the planner's statistics fresh after a large audience.
- Tracking: events_insert and deliveries_set_times (one statement per webhook batch).
"""

import functools

from django.db import connection
from django.utils import timezone

from crm import sql as crm_sql
from crm.models import (
    CampaignInterest,
    SegmentMembership,
    Subscription,
    Supporter,
    Suppression,
    normalize_email,
)
from mailings.models import Delivery, DeliveryEvent, Mailing


def in_use() -> bool:
    """Whether the claim takes its statement rather than its ORM twin: on PostgreSQL.

    The other statements here run on every database.
    """
    return connection.vendor == "postgresql"


# Link reads


@functools.cache
def _supporter_sql(fields):
    # Every page behind a link starts here, and asks "may we email them?"
    # next: answer it in the same query (see mailings.selfservice.may_email).
    # Only the columns the pages show: the others load if something asks.
    return (
        f"SELECT {crm_sql.columns(Supporter, fields, 's')}, "  # noqa: S608
        f"EXISTS (SELECT 1 FROM {Suppression._meta.db_table} x "
        "WHERE x.email_hash = s.email_hash) AS suppressed "
        f"FROM {Supporter._meta.db_table} s WHERE s.id = %s"
    )


def supporter_for_link(supporter_id, fields):
    """Return [the supporter `supporter_id`] (or []) with only `fields` loaded.

    It carries `suppressed`: whether its address is on the suppression list.

    Pays in bench/link_reads_bench.py (docs/performance.md, "Link reads: plain SQL or the ORM").
    """
    with connection.cursor() as cursor:
        cursor.execute(_supporter_sql(fields), [supporter_id])
        rows = cursor.fetchall()
    return crm_sql.instances(Supporter, fields, rows, "suppressed")


def interests_with_choices(*, supporter_id, mailing_id=None) -> list:
    """Return the public interests (or those mailing `mailing_id` was sent for).

    Each carries `subscribed`: whether supporter `supporter_id` is subscribed to it now.

    Pays in bench/link_reads_bench.py (docs/performance.md, "Link reads: plain SQL or the ORM").
    """
    interest = CampaignInterest._meta.db_table
    subscription = Subscription._meta.db_table
    if mailing_id is None:
        scope, params = "i.is_public", []
    else:
        scope, params = crm_sql.sent_for_mailing("i"), [mailing_id]
    with connection.cursor() as cursor:
        cursor.execute(
            # Table and column names come from the models; values are parameters.
            f"SELECT {crm_sql.columns(CampaignInterest, crm_sql.INTEREST_FIELDS, 'i')}, "  # noqa: S608
            f"EXISTS (SELECT 1 FROM {subscription} sub WHERE sub.interest_id = i.id "
            "AND sub.supporter_id = %s AND sub.status = %s) AS subscribed "
            f"FROM {interest} i WHERE {scope} ORDER BY i.position, i.name",
            [supporter_id, Subscription.Status.SUBSCRIBED, *params],
        )
        rows = cursor.fetchall()
    return crm_sql.instances(CampaignInterest, crm_sql.INTEREST_FIELDS, rows, "subscribed")


# Sending


def deliveries_claim(*, mailing_id, limit, worker, until, now) -> list[int]:
    """PostgreSQL: lease up to `limit` queued deliveries of a sending mailing; return their ids.

    Rows another transaction has locked are skipped, so two workers never get
    the same delivery.

    Pays in bench/send_bench.py (docs/performance.md, "Sending").
    """
    delivery = Delivery._meta.db_table
    mailing = Mailing._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {delivery} SET status = %s, claimed_until = %s, claimed_by = %s,
                   attempts = attempts + 1, dispatched_at = NULL
            WHERE id IN (
                SELECT d.id FROM {delivery} d
                WHERE d.mailing_id = %s AND d.status = %s
                  AND (d.retry_at IS NULL OR d.retry_at <= %s)
                  AND EXISTS (SELECT 1 FROM {mailing} m
                              WHERE m.id = d.mailing_id AND m.status = %s)
                ORDER BY d.id LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,  # noqa: S608
            [
                Delivery.Status.SENDING,
                until,
                worker,
                mailing_id,
                Delivery.Status.QUEUED,
                now,
                Mailing.Status.SENDING,
                limit,
            ],
        )
        return sorted(row[0] for row in cursor.fetchall())


def deliveries_insert_audience(query, params, *, mailing_id, now):
    """Insert a queued Delivery of mailing `mailing_id` for each supporter id `query` selects.

    `query` and `params` are the ORM's SQL for the audience (one column);
    a supporter who already has a delivery of this mailing is left as is.

    Pays in bench/send_bench.py (docs/performance.md, "Sending").
    """
    table = Delivery._meta.db_table
    # Columns without a database default must be listed; the rest are NULL.
    # The CTE names the audience's one column, whatever the ORM called it.
    sql = (
        f"WITH audience(supporter_id) AS ({query}) "  # noqa: S608 - SQL from the ORM
        f"INSERT INTO {table} "
        "(mailing_id, supporter_id, status, attempts, claimed_by, esp_message_id, error, "
        "created_at) "
        "SELECT %s, supporter_id, %s, 0, '', '', '', %s FROM audience WHERE true "
        "ON CONFLICT (mailing_id, supporter_id, round) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, mailing_id, Delivery.Status.QUEUED, now])


def audience_tables():
    """Return the tables an audience query reads."""
    return [
        model._meta.db_table for model in (Supporter, Subscription, Suppression, SegmentMembership)
    ]


def tables_analyze_if_never(tables):
    """PostgreSQL: ANALYZE each of `tables` that has over 1,000 rows and was never analysed.

    The ORM cannot ANALYZE; bench/send_bench.py (docs/performance.md, "Sending").
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
            "AND last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 1000",
            [tables],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'ANALYZE "{table}"')


def deliveries_analyze():
    """PostgreSQL: ANALYZE the delivery table.

    The ORM cannot ANALYZE; bench/send_bench.py (docs/performance.md, "Sending").
    """
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}")


def deliveries_dispatch(ids, *, now, until, worker) -> set[int]:
    """Mark the sending deliveries `ids` still leased to `worker` dispatched; return those ids.

    Their lease is renewed to `until`.

    Pays in bench/send_bench.py (docs/performance.md, "Sending").
    """
    table = Delivery._meta.db_table
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET dispatched_at = %s, claimed_until = %s "  # noqa: S608
            f"WHERE id IN ({placeholders}) AND status = %s AND claimed_by = %s "
            "AND claimed_until > %s RETURNING id",
            [now, until, *ids, Delivery.Status.SENDING, worker, now],
        )
        return {pk for (pk,) in cursor.fetchall()}


def deliveries_mark_sent(pairs, *, now):
    """Mark each (delivery id, ESP message id) of `pairs` sent, in one statement.

    One UPDATE … FROM (VALUES …), on PostgreSQL and SQLite alike.

    Pays in bench/send_bench.py (docs/performance.md, "Sending").
    """
    values = ", ".join(["(CAST(%s AS BIGINT), %s)"] * len(pairs))
    params = [value for pk, message_id in pairs for value in (pk, message_id)]
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, sent_at = %s, claimed_until = NULL, "  # noqa: S608
            "retry_at = NULL, error = '', esp_message_id = v.column2 "
            f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1",
            [Delivery.Status.SENT, now, *params],
        )


# Tracking


def events_insert(rows, columns, *, now):
    """Insert event rows (values of `columns`) whose delivery exists; return how many were new.

    Pays in bench/load_bench.py --no-send (docs/performance.md, "Tracking webhooks alone").
    """
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    table = quote(DeliveryEvent._meta.db_table)
    values = ", ".join(["(CAST(%s AS BIGINT), %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    names = ", ".join(quote(name) for name in ("mailing_id", *columns))
    picked = ", ".join(f"v.column{n}" for n in range(2, len(columns) + 1))
    params = [value for row in rows for value in (*row[:4], adapt(row[4]), *row[5:])]
    # Inserted in key order: two requests carrying some of the same events (an
    # ESP retrying while its first attempt still runs) then wait for each other
    # on the unique index in the same order, and never deadlock. "WHERE true"
    # lets SQLite tell the SELECT from the ON CONFLICT clause.
    sql = (
        f"INSERT INTO {table} ({names}, {quote('pending')}, {quote('received_at')}) "  # noqa: S608
        f"SELECT d.mailing_id, d.id, {picked}, %s, %s FROM (VALUES {values}) AS v "
        f"JOIN {quote(Delivery._meta.db_table)} AS d ON d.id = v.column1 WHERE true "
        f"ORDER BY v.column3 ON CONFLICT ({quote('esp_name')}, {quote('dedupe_key')}) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, adapt(now), *params])
        return cursor.rowcount


def deliveries_set_times(column, values):
    """Set `column` to each delivery's value in `values` ({id: datetime}), in one statement.

    Pays in bench/load_bench.py --no-send (docs/performance.md, "Tracking webhooks alone").
    """
    table = Delivery._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    rows = ", ".join(["(CAST(%s AS BIGINT), %s)"] * len(values))
    params = [value for pk, moment in values.items() for value in (pk, adapt(moment))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column} = v.column2 "  # noqa: S608 - names from EVENT_FIELDS
            f"FROM (VALUES {rows}) AS v WHERE {table}.id = v.column1",
            params,
        )


# Journeys


def _pairs_in_chunks(pairs, types, size=5000):
    """Yield ("(CAST(%s AS type), ...), ...", params) for `pairs`, `size` rows at a time.

    The rows of a FROM (VALUES …) list, each value cast to its type in `types`.
    """
    row = "(" + ", ".join(f"CAST(%s AS {kind})" for kind in types) + ")"
    for start in range(0, len(pairs), size):
        chunk = pairs[start : start + size]
        yield ", ".join([row] * len(chunk)), [value for pair in chunk for value in pair]


def deliveries_insert_rounds(*, mailing_id, pairs, now) -> None:
    """Queue a delivery of `mailing_id` for each (supporter id, round) in `pairs`, in one statement.

    A journey's email step: a pair that already has its delivery is left as
    it is (the unique key mailings_delivery_once), so a repeated batch queues
    nothing twice. One INSERT … SELECT FROM (VALUES …) on PostgreSQL and SQLite
    alike; the ORM's bulk_create prepared every one of a delivery's 25 fields
    for each row and cost most of the step's time.

    Pays in bench/journey_bench.py (docs/performance.md, "Journeys").
    """
    table = Delivery._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    for rows, params in _pairs_in_chunks(pairs, ("BIGINT", "INTEGER")):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} "  # noqa: S608 - names from _meta
                "(mailing_id, supporter_id, round, status, attempts, claimed_by, "
                "esp_message_id, error, created_at) "
                f"SELECT %s, v.column1, v.column2, %s, 0, '', '', '', %s FROM (VALUES {rows}) "
                "AS v WHERE true ON CONFLICT (mailing_id, supporter_id, round) DO NOTHING",
                [mailing_id, Delivery.Status.QUEUED, adapt(now), *params],
            )


def visits_insert(*, pairs, now) -> None:
    """Record that each (enrolment id, step id) in `pairs` reached its step (once each).

    One INSERT … SELECT FROM (VALUES …) per 5,000, as deliveries_insert_rounds;
    a visit already recorded is left as it is.

    Pays in bench/journey_bench.py (docs/performance.md, "Journeys").
    """
    from mailings.journeys.models import StepVisit

    table = connection.ops.quote_name(StepVisit._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    for rows, params in _pairs_in_chunks(pairs, ("BIGINT", "BIGINT")):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (enrolment_id, step_id, at) "  # noqa: S608 - from _meta
                f"SELECT v.column1, v.column2, %s FROM (VALUES {rows}) AS v WHERE true "
                "ON CONFLICT (enrolment_id, step_id) DO NOTHING",
                [adapt(now), *params],
            )


def enrolments_claim(*, journey_id, limit, now, until) -> list[int]:
    """Push `due_at` of up to `limit` due enrolments of `journey_id` to `until`; return their ids.

    One UPDATE … RETURNING (no ORM twin; on PostgreSQL the due rows are picked
    in a locking CTE): two workers never claim the same row (PostgreSQL skips
    rows another transaction has locked; SQLite runs one writer at a time),
    and a claimed row whose worker dies is due again at `until`. The SELECT
    reads the partial index journeys_enrolment_due.

    Pays in bench/journey_bench.py (docs/performance.md, "Journeys").
    """
    from mailings.journeys.models import Enrolment

    table = connection.ops.quote_name(Enrolment._meta.db_table)
    due = (
        f"SELECT id FROM {table} WHERE journey_id = %s AND state = %s AND due_at <= %s "  # noqa: S608
        "ORDER BY due_at LIMIT %s"
    )
    if connection.vendor == "postgresql":
        # A CTE, evaluated once: as `id IN (SELECT … LIMIT … SKIP LOCKED)` the
        # planner may run the subquery again for each row and claim past the limit.
        sql = (
            f"WITH due AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED) "  # noqa: S608
            f"UPDATE {table} AS e SET due_at = %s FROM due WHERE e.id = due.id RETURNING e.id"
        )
    else:
        sql = f"UPDATE {table} SET due_at = %s WHERE id IN ({due}) RETURNING id"  # noqa: S608
    active = Enrolment.State.ACTIVE
    now, until = (connection.ops.adapt_datetimefield_value(value) for value in (now, until))
    if connection.vendor == "postgresql":
        params = [journey_id, active, now, limit, until]
    else:
        params = [until, journey_id, active, now, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# Actions


def signature_insert(*, supporter, signature, given) -> tuple | None:
    """PostgreSQL: sign for the person at `supporter`'s address in one statement.

    `supporter` and `signature` are unsaved instances holding what signing
    would save: the person as they would be created (their address trimmed
    and hashed, and the details they gave, named in `given`), and their first
    signature without its supporter. The statement finds the person by
    address, or inserts them and their history row (as simple_history's
    post_save writes it) when the address is new and was not erased, then
    inserts the signature; someone who signed already, and ticks nothing
    this time, is answered with the signature they have.

    Returns (signature id, supporter id, supporter's first name, counted,
    confirmation), or None having written nothing when signing needs more:
    an erased address or supporter, details to fill in on a known
    supporter, a second signature that ticks a box, or the same address
    being added at this moment by someone else. The caller then takes the
    ORM way (mailings.actions.services.action_sign), its twin.

    Pays in bench/action_bench.py (docs/performance.md, "Action pages"): the
    ORM's nine statements in a transaction cost most of a signature's CPU.
    """
    _, supporter_values = crm_sql.column_values(supporter, leave_out="id")
    _, signature_values = crm_sql.column_values(signature, leave_out="supporter")
    params = [
        Supporter.Status.ERASED,
        normalize_email(supporter.email),
        *supporter_values,
        supporter.email_hash,
        Suppression.Reason.ERASURE,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        *signature_values,
        signature.confirmation,
        signature.action_id,
        # A second signature with a box ticked adds it: the ORM way.
        signature.confirmation == signature.Confirmation.NONE,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_signature_insert_sql(tuple(sorted(given))), params)
        return cursor.fetchone()


def _erased_address():
    """SQL: the address whose hash is the parameter was erased (nobody adds it again).

    Reads the suppression list, which only crm's services write.
    """
    return (
        f"EXISTS (SELECT 1 FROM {Suppression._meta.db_table} x "  # noqa: S608
        "WHERE x.email_hash = %s AND x.reason = %s)"
    )


@functools.cache
def _signature_insert_sql(given):
    from mailings.actions.models import Signature

    quote = connection.ops.quote_name
    history = Supporter.history.model._meta
    tracked = ", ".join(
        quote(field.column)
        for field in history.concrete_fields
        if not field.name.startswith("history_")
    )
    signatures = quote(Signature._meta.db_table)
    supporter_columns, supporter_casts = crm_sql.column_casts(Supporter, leave_out="id")
    signature_columns, signature_casts = crm_sql.column_casts(Signature, leave_out="supporter")
    # A known supporter with a blank the signer fills takes the ORM way, which
    # fills it and records the change in their history.
    blanks = " OR ".join(
        f"s.{quote(Supporter._meta.get_field(name).column)} = ''" for name in given
    )
    return (
        # Only table and column names from _meta are interpolated; values are parameters.
        "WITH found AS ("  # noqa: S608
        f"SELECT s.id, s.first_name, s.status = %s{f' OR {blanks}' if blanks else ''} AS other "
        f"FROM {quote(Supporter._meta.db_table)} s WHERE LOWER(s.email) = %s"
        "), created AS ("
        f"INSERT INTO {quote(Supporter._meta.db_table)} ({supporter_columns}) "
        f"SELECT {supporter_casts} WHERE NOT EXISTS (SELECT 1 FROM found) "
        f"AND NOT {_erased_address()} "
        f"ON CONFLICT DO NOTHING RETURNING {tracked}"
        "), history AS ("
        f"INSERT INTO {quote(history.db_table)} ({tracked}, history_date, "
        "history_change_reason, history_type, history_user_id) "
        f"SELECT {tracked}, %s, NULL, '+', NULL FROM created"
        "), person AS ("
        "SELECT id, first_name, TRUE AS created FROM created "
        "UNION ALL SELECT id, first_name, FALSE FROM found WHERE NOT other"
        "), signed AS ("
        f"INSERT INTO {signatures} "
        f"({signature_columns}, {quote(Signature._meta.get_field('supporter').column)}) "
        f"SELECT {signature_casts}, person.id FROM person "
        "ON CONFLICT DO NOTHING RETURNING id, supporter_id"
        "), outcome AS ("
        "SELECT id, supporter_id, TRUE AS counted, CAST(%s AS text) AS confirmation FROM signed "
        f"UNION ALL SELECT id, supporter_id, FALSE, confirmation FROM {signatures} "
        "WHERE action_id = %s AND supporter_id = (SELECT id FROM person) "
        "AND NOT EXISTS (SELECT 1 FROM signed) AND %s"
        ") SELECT outcome.id, person.id, person.first_name, outcome.counted, outcome.confirmation "
        "FROM outcome JOIN person ON person.id = outcome.supporter_id"
    )
