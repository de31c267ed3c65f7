"""
Every raw SQL statement of crm, and the helpers that build them.

Table and column names come from the models' _meta; values are always
parameters. Each statement is here because docs/performance.md shows it pays:

- Link reads without RawQuerySet: the fixed queries behind every supporter
  link (columns, instances, sent_for_mailing; the statements themselves are
  in mailings/sql.py). For their handful of fixed queries, compiling the ORM's
  query and running a RawQuerySet cost more than the database spends on them,
  so they are written as SQL: column lists come from the models, values are
  always parameters, and rows come back as ordinary model instances (fields not
  selected load on first use, as with `QuerySet.only()`).
- One-click unsubscribe: subscriptions_withdraw, the PostgreSQL twin of
  crm.services.consent.supporter_unsubscribe.
- Bulk subscribing with evidence (the API's batch upsert, staff bulk actions):
  subscriptions_grant, the twin of crm.services.consent.supporters_subscribe's writes.
- Imports: the state check (match_any, import_state_fingerprint, the twin of
  crm.imports.state._State.fingerprint), the lock taken while confirming, the
  bulk writes of crm.imports.writers._PostgresWriter (COPY and set-based SQL,
  the twin of _DjangoWriter), and import_subscribe, the PostgreSQL twin of
  crm.services.consent.consents_grant_bulk.
- The admin's list counts: table_row_estimate (crm.estimates).

Only PostgreSQL runs these: callers ask in_use() whether to take a statement
or its ORM twin, and the equivalence tests (tests/sql/) run both on PostgreSQL.
Statements that write Subscription, ConsentRecord, Suppression or AuditEvent
(subscriptions_withdraw, subscriptions_grant, import_subscribe) are run only by crm.services, like
every other write to those tables (tests/test_consent_writes.py checks).
"""

import functools

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    PartnerOrganisation,
    Subscription,
    Supporter,
    Suppression,
)


def in_use() -> bool:
    """Whether callers take these statements rather than their ORM twins: on PostgreSQL."""
    return connection.vendor == "postgresql"


# What the supporter pages show of a campaign interest.
INTEREST_FIELDS = ("id", "slug", "name", "description", "position")


def columns(model, names, alias) -> str:
    """Return "alias.column, ..." for the fields `names` of `model`, in the model's field order."""
    return ", ".join(f"{alias}.{field.column}" for field in _fields(model, names))


def instances(model, names, rows, *extra) -> list:
    """Return a `model` instance for each row selected by `columns(model, names, ...)`.

    Each row may carry more columns after the model's; they become attributes
    named by `extra`.
    """
    attnames = [field.attname for field in _fields(model, names)]
    count = len(attnames)
    found = []
    for row in rows:
        instance = model.from_db(connection.alias, attnames, row[:count])
        for name, value in zip(extra, row[count:], strict=True):
            setattr(instance, name, value)
        found.append(instance)
    return found


@functools.cache
def _fields(model, names):
    # Model.from_db takes values in the order of the model's concrete fields.
    return tuple(field for field in model._meta.concrete_fields if field.name in names)


@functools.cache
def sent_for_mailing(alias) -> str:
    """Return a condition on interests aliased `alias`: the mailing (parameter %s) was for it."""
    from crm.models import CampaignInterest

    through = CampaignInterest.mailings.through._meta
    return (
        f"{alias}.id IN (SELECT {through.get_field('campaigninterest').column} "  # noqa: S608
        f"FROM {through.db_table} WHERE {through.get_field('mailing').column} = %s)"
    )


# One-click unsubscribe


def subscriptions_withdraw(
    *, supporter, scope, method, mailing, actor=None, actor_label="", wording="", ip_address=None
):
    """PostgreSQL: withdraw from the interests `scope` selects, in one statement.

    `scope` is (condition on the interests table, aliased "i"; its parameters).
    Return those interests in their order, each carrying `withdrawn`: True if
    the supporter left it now.

    Writes exactly what supporter_unsubscribe writes on other databases (the
    subscriptions ended, a consent record and an audit event per topic left),
    for a fifth of the CPU: one-click unsubscribes arrive in bursts after every
    newsletter. Like consent_grant it locks the supporter first, so the two
    never deadlock; a concurrent repeat waits, then finds nothing left to end.
    A repeat with nothing to end takes no lock and writes nothing.

    Pays in bench/preferences_bench.py (docs/performance.md, "Supporter pages").
    """
    now = timezone.now()
    record = ConsentRecord(
        supporter_id=supporter.pk,
        action=ConsentRecord.Action.WITHDRAWN,
        method=method,
        mailing=mailing,
        actor=actor,
        actor_label=actor_label,
        wording=wording,
        ip_address=ip_address,
        created_at=now,
    )
    event = AuditEvent(
        kind=AuditEvent.Kind.CONSENT_WITHDRAWN,
        supporter_id=supporter.pk,
        actor=actor,
        source=actor_label or method,
        created_at=now,
    )
    record_columns, record_values = column_values(record, leave_out="interest")
    event_columns, event_values = column_values(event, leave_out="detail")
    condition, scope_params = scope
    subscription = Subscription._meta.db_table
    # Table and column names come from the models; values are parameters.
    sql = f"""
        WITH topics AS (
            SELECT {columns(CampaignInterest, INTEREST_FIELDS, "i")}
            FROM {CampaignInterest._meta.db_table} i WHERE {condition}
        ), ended AS (
            UPDATE {subscription}
            SET status = %s, unsubscribed_at = %s, updated_at = %s
            WHERE supporter_id = (
                SELECT s.id FROM {Supporter._meta.db_table} s
                WHERE s.id = %s AND EXISTS (
                    SELECT 1 FROM {subscription} sub WHERE sub.supporter_id = s.id
                    AND sub.status = %s AND sub.interest_id IN (SELECT id FROM topics)
                )
                FOR UPDATE
            )
            AND status = %s AND interest_id IN (SELECT id FROM topics)
            RETURNING interest_id
        ), records AS (
            INSERT INTO {ConsentRecord._meta.db_table} ({record_columns}, interest_id)
            SELECT {", ".join(["%s"] * len(record_values))}, interest_id FROM ended
        ), events AS (
            INSERT INTO {AuditEvent._meta.db_table} ({event_columns}, detail)
            SELECT {", ".join(["%s"] * len(event_values))}, jsonb_build_object(
                'interest', topics.slug, 'method', %s::text, 'mailing', %s::bigint
            )
            FROM ended JOIN topics ON topics.id = ended.interest_id
        )
        SELECT topics.*, topics.id IN (SELECT interest_id FROM ended) AS withdrawn
        FROM topics ORDER BY topics.position, topics.name
    """  # noqa: S608
    params = [
        *scope_params,
        Subscription.Status.UNSUBSCRIBED,
        now,
        now,
        supporter.pk,
        Subscription.Status.SUBSCRIBED,
        Subscription.Status.SUBSCRIBED,
        *record_values,
        *event_values,
        method,
        mailing.pk if mailing else None,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return instances(CampaignInterest, INTEREST_FIELDS, rows, "withdrawn")


def subscriptions_grant(*, supporter_ids, interest, method, actor, actor_label, now, **details):
    """PostgreSQL: subscribe `supporter_ids` to `interest` with their evidence, in one statement.

    The twin of the ORM writes in crm.services.consent.supporters_subscribe
    (its only caller, which has already left out who may not be subscribed):
    a subscription, a "granted" consent record (with `details`: wording,
    version, partner, lawful basis) and an audit event for each supporter.
    The ids travel as one parameter and every other value once, instead of
    a model instance and its dozen parameters per row.

    Pays in bench/api_bench.py (docs/performance.md, "API").
    """
    subscription = Subscription(
        interest=interest,
        status=Subscription.Status.SUBSCRIBED,
        subscribed_at=now,
        updated_at=now,
    )
    record = ConsentRecord(
        interest=interest,
        action=ConsentRecord.Action.GRANTED,
        method=method,
        actor=actor,
        actor_label=actor_label,
        created_at=now,
        **details,
    )
    event = AuditEvent(
        kind=AuditEvent.Kind.CONSENT_GRANTED,
        actor=actor,
        source=actor_label or method,
        detail={"interest": interest.slug, "method": method, "mailing": None},
        created_at=now,
    )
    writes = []
    params = {"supporters": _id_list(supporter_ids)}
    for name, instance in (("sub", subscription), ("rec", record), ("evt", event)):
        names, values = column_values(instance, leave_out="supporter")
        placeholders = []
        for index, value in enumerate(values):
            params[f"{name}{index}"] = value
            placeholders.append(f"%({name}{index})s")
        writes.append((type(instance)._meta.db_table, names, ", ".join(placeholders)))
    (
        (sub_table, sub_columns, sub_values),
        (rec_table, rec_columns, rec_values),
        (
            evt_table,
            evt_columns,
            evt_values,
        ),
    ) = writes
    # Table and column names come from the models; values are parameters.
    sql = f"""
        WITH granted AS (
            SELECT supporter_id, position
            FROM unnest(string_to_array(%(supporters)s, ',')::bigint[])
                WITH ORDINALITY AS g (supporter_id, position)
        ), subscribed AS (
            INSERT INTO {sub_table} ({sub_columns}, supporter_id)
            SELECT {sub_values}, supporter_id FROM granted ORDER BY position
        ), recorded AS (
            INSERT INTO {rec_table} ({rec_columns}, supporter_id)
            SELECT {rec_values}, supporter_id FROM granted ORDER BY position
        )
        INSERT INTO {evt_table} ({evt_columns}, supporter_id)
        SELECT {evt_values}, supporter_id FROM granted ORDER BY position
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def column_values(instance, *, leave_out):
    """Return the quoted columns of `instance` and the values the ORM would save in them.

    Leaves out the primary key and the field named `leave_out`, which the caller fills.
    """
    fields, columns = _insert_columns(type(instance), leave_out)
    values = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields
    ]
    return columns, values


@functools.cache
def column_casts(model, *, leave_out) -> tuple[str, str]:
    """Return the quoted columns column_values names, and "CAST(%s AS type), ..." for its values.

    For an INSERT … SELECT, where PostgreSQL cannot take the parameters'
    types from the columns they go into.
    """
    fields, columns = _insert_columns(model, leave_out)
    casts = ", ".join(f"CAST(%s AS {field.cast_db_type(connection)})" for field in fields)
    return columns, casts


@functools.cache
def _insert_columns(model, leave_out):
    fields = [
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name != leave_out
    ]
    return fields, ", ".join(connection.ops.quote_name(field.column) for field in fields)


# Imports: the state check


# Columns rows are matched on, as SQL on PostgreSQL (crm.imports.state._matching
# uses ORM lookups elsewhere); with the type their values are sent as.
MATCH_SQL = {
    "email_hash": ("{table}.email_hash", "text"),
    "LOWER(email)": ("LOWER({table}.email)", "text"),
    "supporter_id": ("{table}.supporter_id", "bigint"),
    "id": ("{table}.id", "bigint"),
}


def match_any(model, column, values):
    """Return a condition on `model`'s table: `column` (a MATCH_SQL key) is one of `values`.

    The values travel as one parameter, a newline-separated text the server
    splits, which spares building and parsing thousands of placeholders
    (addresses, hashes and ids never contain a newline).
    """
    table = connection.ops.quote_name(model._meta.db_table)
    expression, kind = MATCH_SQL[column]
    expression = expression.format(table=table)
    joined = "\n".join(map(str, values))
    # Only a fixed expression from MATCH_SQL is interpolated; values are a parameter.
    sql = f"{expression} = ANY(string_to_array(%s, E'\\n')::{kind}[])"
    return RawSQL(sql, (joined,), BooleanField())  # noqa: S611


def import_state_fingerprint(keys, hashes, *, fields, with_updated, separators):
    """Lock the supporters `keys` name and return the digest of their state.

    `fields` are the supporter fields read (crm.imports.state.SUPPORTER_STATE);
    `separators` the (field, record, section) separators of the text digested.
    One statement reads and locks the same rows crm.imports.state._look_up
    would, in id order, and returns only the digest, so nothing travels back
    row by row.

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    field_separator, record_separator, section_separator = separators
    fields = ", ".join(f"s.{name}" for name in fields)
    if with_updated:
        fields += ", (extract(epoch FROM s.updated_at) * 1000000)::bigint"
    with connection.cursor() as cursor:
        cursor.execute(
            # Only fixed table and column names are interpolated; values are parameters.
            f"""
            WITH matched AS MATERIALIZED (
                SELECT concat_ws(%(field)s, {fields}) AS line, s.id
                FROM {Supporter._meta.db_table} AS s
                WHERE lower(s.email) = ANY(string_to_array(%(keys)s, E'\\n'))
                ORDER BY s.id
                FOR UPDATE
            )
            SELECT encode(sha256(convert_to(concat_ws(%(section)s,
                (SELECT coalesce(string_agg(line, %(record)s ORDER BY id), '') FROM matched),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, supporter_id, interest_id, status), %(record)s
                    ORDER BY supporter_id, interest_id), '')
                 FROM {Subscription._meta.db_table}
                 WHERE supporter_id IN (SELECT id FROM matched)),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, email_hash, reason), %(record)s
                    ORDER BY email_hash COLLATE "C"), '')
                 FROM {Suppression._meta.db_table}
                 WHERE email_hash = ANY(string_to_array(%(hashes)s, E'\\n')))
            ), 'UTF8')), 'hex')
            """,  # noqa: S608
            {
                "keys": "\n".join(keys),
                "hashes": "\n".join(hashes),
                "field": field_separator,
                "record": record_separator,
                "section": section_separator,
            },
        )
        return cursor.fetchone()[0]


def suppressions_lock():
    """Lock the suppression list in SHARE mode until the transaction ends.

    Suppressions added mid-import wait until it commits, so no address
    suppressed meanwhile is subscribed (webhooks simply retry later).

    The ORM cannot lock a table: here for correctness, not speed.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {Suppression._meta.db_table} IN SHARE MODE")


# Imports: the bulk writes (crm.imports.writers._PostgresWriter; import_subscribe for
# crm.services.consent.consents_grant_bulk)


def _id_list(values):
    """Return `values` as one text parameter, for `= ANY(string_to_array(%s, ',')::bigint[])`."""
    return ",".join(map(str, values))


def copy_rows(table, columns, rows):
    """Write `rows` (values for `columns`) into `table` with one binary COPY.

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    # Binary COPY: values go as the columns' own types, which spares
    # formatting and escaping every value as text (most of the Python time).
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [quote(table)],
        )
        types = dict(cursor.fetchall())
        with cursor.cursor.copy(
            f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([types[column] for column in columns])
            for row in rows:
                copy.write_row(row)


def supporter_ids_reserve(count):
    """Return `count` new ids from the supporter table's own sequence.

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Supporter._meta.db_table, count],
        )
        return [pk for (pk,) in cursor.fetchall()]


# The temporary table an import's changed fields are copied into.
IMPORT_CHANGES_TABLE = "crm_import_changes"


def supporters_fill(changes, *, fields, now):
    """Fill the `fields` each (id, {field: value}) of `changes` gives; stamp updated_at `now`.

    The changes are copied into a temporary table, then one UPDATE applies
    them (a field not given keeps its value).

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    quote = connection.ops.quote_name
    table = quote(Supporter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {IMPORT_CHANGES_TABLE} ("
            "id bigint PRIMARY KEY, "
            + ", ".join(f"{quote(name)} text" for name in fields)
            + ") ON COMMIT DROP"
        )
        cursor.execute(f"TRUNCATE {IMPORT_CHANGES_TABLE}")
    copy_rows(
        IMPORT_CHANGES_TABLE,
        ("id", *fields),
        [(pk, *(values.get(name) for name in fields)) for pk, values in changes],
    )
    assignments = ", ".join(
        f"{quote(name)} = COALESCE(c.{quote(name)}, s.{quote(name)})" for name in fields
    )
    with connection.cursor() as cursor:
        cursor.execute(
            # Only quoted column names are interpolated; values are parameters.
            f"UPDATE {table} AS s SET {assignments}, updated_at = %s "  # noqa: S608
            f"FROM {IMPORT_CHANGES_TABLE} AS c WHERE s.id = c.id",
            [now],
        )


def supporters_history_write(ids, *, fields, columns, kind, now, reason, actor_id):
    """Copy `fields` of supporters `ids` into their history rows (`columns`), in one statement.

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    quote = connection.ops.quote_name
    fields = ", ".join(quote(name) for name in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            # Only quoted table and column names are interpolated.
            f"INSERT INTO {quote(Supporter.history.model._meta.db_table)} "  # noqa: S608
            f"({', '.join(quote(name) for name in columns)}) "
            f"SELECT id, {fields}, %s, %s, %s, %s FROM {quote(Supporter._meta.db_table)} "
            "WHERE id = ANY(string_to_array(%s, ',')::bigint[])",
            [now, reason, kind, actor_id, _id_list(ids)],
        )


def import_subscribe(grants, *, batch_id, actor_id, label, now):
    """Subscribe each (supporter, interest, partner) of `grants` and write its consent record.

    The PostgreSQL way of crm.services.consent.consents_grant_bulk, its only
    caller. One statement writes the subscriptions and, from the same rows,
    their consent records, with the partner's lawful basis as it is now. A
    missing partner leaves the basis NULL, which the column refuses.

    Pays in bench/import_bench.py (docs/performance.md, "Partner import and export").
    """
    subscription = Subscription._meta.db_table
    consent = ConsentRecord._meta.db_table
    partner = PartnerOrganisation._meta.db_table
    supporter_ids, interest_ids, partner_ids = zip(*grants, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH granted AS (
                SELECT * FROM unnest(
                    string_to_array(%(supporters)s, ',')::bigint[],
                    string_to_array(%(interests)s, ',')::bigint[],
                    string_to_array(%(partners)s, ',')::bigint[]
                ) AS g (supporter_id, interest_id, partner_id)
            ), subscribed AS (
                INSERT INTO {subscription} (
                    supporter_id, interest_id, status, subscribed_at, unsubscribed_at,
                    updated_at
                )
                SELECT supporter_id, interest_id, %(subscribed)s, %(now)s, NULL, %(now)s
                FROM granted
            )
            INSERT INTO {consent} (
                supporter_id, interest_id, action, method, lawful_basis, wording,
                wording_version, partner_id, import_batch_id, actor_id, actor_label,
                created_at
            )
            SELECT g.supporter_id, g.interest_id, %(granted)s, %(method)s, p.lawful_basis,
                '', '', g.partner_id, %(batch)s, %(actor)s, %(label)s, %(now)s
            FROM granted AS g LEFT JOIN {partner} AS p ON p.id = g.partner_id
            """,  # noqa: S608
            {
                "supporters": _id_list(supporter_ids),
                "interests": _id_list(interest_ids),
                "partners": _id_list(partner_ids),
                "subscribed": Subscription.Status.SUBSCRIBED,
                "granted": ConsentRecord.Action.GRANTED,
                "method": ConsentRecord.Method.PARTNER_IMPORT,
                "batch": batch_id,
                "actor": actor_id,
                "label": label,
                "now": now,
            },
        )


# The admin's list counts (crm.estimates)


def table_row_estimate(connection, model):
    """Return PostgreSQL's estimate of the rows in `model`'s table (pg_class.reltuples).

    -1 means the table was never vacuumed or analysed.

    The ORM cannot read pg_class; bench/crm_bench.py (docs/performance.md,
    "CRM on a million supporters").
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        return cursor.fetchone()[0]
