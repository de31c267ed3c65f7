"""
The two bulk writers an applied plan goes through, chosen by _writer():
_DjangoWriter (the ORM, on any database) and _PostgresWriter (binary COPY and
set-based SQL), with the columns they write.
"""

from django.db import connection

from crm.imports.columns import PERSON_FIELDS
from crm.models import ConsentRecord, PartnerOrganisation, Subscription, Supporter

# What differs between the new supporters of a batch; what they share is
# added by the writer (`fixed` in _apply).
NEW_COLUMNS = ("email", "email_hash", *PERSON_FIELDS, "partner_id")
SUBSCRIPTION_COLUMNS = (
    "supporter_id",
    "interest_id",
    "status",
    "subscribed_at",
    "unsubscribed_at",
    "updated_at",
)
CONSENT_COLUMNS = (
    "supporter_id",
    "interest_id",
    "action",
    "method",
    "lawful_basis",
    "wording",
    "wording_version",
    "partner_id",
    "import_batch_id",
    "actor_id",
    "actor_label",
    "created_at",
)
HISTORY_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "postcode",
    "country",
    "phone",
    "organisation",
    "source",
    "status",
    "notes",
    "created_at",
    "partner_id",
    "import_batch_id",
)
HISTORY_COLUMNS = (
    "id",
    *HISTORY_FIELDS,
    "history_date",
    "history_change_reason",
    "history_type",
    "history_user_id",
)


class _DjangoWriter:
    """Bulk writes through the ORM: any database Django supports."""

    def insert_supporters(self, rows, *, fixed):
        created = Supporter.objects.bulk_create(
            [Supporter(**dict(zip(NEW_COLUMNS, values, strict=True)), **fixed) for values in rows]
        )
        return [supporter.pk for supporter in created]

    def update_supporters(self, changes, *, now):
        by_fields = {}
        for pk, values in changes:
            by_fields.setdefault(tuple(sorted(values)), []).append((pk, values))
        for names, group in by_fields.items():
            objs = [Supporter(pk=pk, updated_at=now, **values) for pk, values in group]
            Supporter.objects.bulk_update(objs, [*names, "updated_at"])

    def write_history(self, ids, *, kind, now, reason, actor_id):
        """Record the current state of supporters `ids` in their history (simple-history)."""
        states = Supporter.objects.filter(pk__in=ids).values_list("pk", *HISTORY_FIELDS)
        self.insert(
            Supporter.history.model,
            HISTORY_COLUMNS,
            [(*state, now, reason, kind, actor_id) for state in states],
        )

    def subscribe(self, grants, *, batch_id, actor_id, label, now):
        """Subscribe each (supporter, interest, partner) and write its consent record."""
        bases = dict(
            PartnerOrganisation.objects.filter(
                pk__in={partner_id for _, _, partner_id in grants}
            ).values_list("pk", "lawful_basis")
        )
        subscribed = Subscription.Status.SUBSCRIBED
        self.insert(
            Subscription,
            SUBSCRIPTION_COLUMNS,
            [(pk, interest_id, subscribed, now, None, now) for pk, interest_id, _ in grants],
        )
        granted, method = ConsentRecord.Action.GRANTED, ConsentRecord.Method.PARTNER_IMPORT
        shared = (batch_id, actor_id, label, now)
        self.insert(
            ConsentRecord,
            CONSENT_COLUMNS,
            [
                (pk, interest_id, granted, method, bases[partner_id], "", "", partner_id, *shared)
                for pk, interest_id, partner_id in grants
            ],
        )

    def insert(self, model, columns, rows):
        model.objects.bulk_create(
            [model(**dict(zip(columns, values, strict=True))) for values in rows]
        )


def _id_list(values):
    """Return `values` as one text parameter, for `= ANY(string_to_array(%s, ',')::bigint[])`."""
    return ",".join(map(str, values))


class _PostgresWriter(_DjangoWriter):
    """Bulk writes with COPY and set-based SQL: several times faster than the ORM.

    Rows are derived in the database where they can be (history from the
    supporter rows, subscriptions and consent records from one list of ids
    per 10,000), so only the new supporters and the filled fields travel
    from Python row by row.
    """

    def _copy(self, table, columns, rows):
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

    def insert_supporters(self, rows, *, fixed):
        # Take ids from the table's own sequence, then COPY the rows with them.
        table = Supporter._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, len(rows)],
            )
            ids = [pk for (pk,) in cursor.fetchall()]
        shared = tuple(fixed.values())
        self._copy(
            table,
            ("id", *NEW_COLUMNS, *fixed),
            [(pk, *values, *shared) for pk, values in zip(ids, rows, strict=True)],
        )
        return ids

    def update_supporters(self, changes, *, now):
        quote = connection.ops.quote_name
        table = quote(Supporter._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS crm_import_changes ("
                "id bigint PRIMARY KEY, "
                + ", ".join(f"{quote(name)} text" for name in PERSON_FIELDS)
                + ") ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE crm_import_changes")
        self._copy(
            "crm_import_changes",
            ("id", *PERSON_FIELDS),
            [(pk, *(values.get(name) for name in PERSON_FIELDS)) for pk, values in changes],
        )
        assignments = ", ".join(
            f"{quote(name)} = COALESCE(c.{quote(name)}, s.{quote(name)})" for name in PERSON_FIELDS
        )
        with connection.cursor() as cursor:
            cursor.execute(
                # Only quoted column names are interpolated; values are parameters.
                f"UPDATE {table} AS s SET {assignments}, updated_at = %s "  # noqa: S608
                "FROM crm_import_changes AS c WHERE s.id = c.id",
                [now],
            )

    def write_history(self, ids, *, kind, now, reason, actor_id):
        quote = connection.ops.quote_name
        fields = ", ".join(quote(name) for name in HISTORY_FIELDS)
        with connection.cursor() as cursor:
            cursor.execute(
                # Only quoted table and column names are interpolated.
                f"INSERT INTO {quote(Supporter.history.model._meta.db_table)} "  # noqa: S608
                f"({', '.join(quote(name) for name in HISTORY_COLUMNS)}) "
                f"SELECT id, {fields}, %s, %s, %s, %s FROM {quote(Supporter._meta.db_table)} "
                "WHERE id = ANY(string_to_array(%s, ',')::bigint[])",
                [now, reason, kind, actor_id, _id_list(ids)],
            )

    def subscribe(self, grants, *, batch_id, actor_id, label, now):
        # One statement writes the subscriptions and, from the same rows, their
        # consent records, with the partner's lawful basis as it is now. A
        # missing partner leaves the basis NULL, which the column refuses.
        supporter_ids, interest_ids, partner_ids = zip(*grants, strict=True)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH granted AS (
                    SELECT * FROM unnest(
                        string_to_array(%(supporters)s, ',')::bigint[],
                        string_to_array(%(interests)s, ',')::bigint[],
                        string_to_array(%(partners)s, ',')::bigint[]
                    ) AS g (supporter_id, interest_id, partner_id)
                ), subscribed AS (
                    INSERT INTO crm_subscription (
                        supporter_id, interest_id, status, subscribed_at, unsubscribed_at,
                        updated_at
                    )
                    SELECT supporter_id, interest_id, %(subscribed)s, %(now)s, NULL, %(now)s
                    FROM granted
                )
                INSERT INTO crm_consentrecord (
                    supporter_id, interest_id, action, method, lawful_basis, wording,
                    wording_version, partner_id, import_batch_id, actor_id, actor_label,
                    created_at
                )
                SELECT g.supporter_id, g.interest_id, %(granted)s, %(method)s, p.lawful_basis,
                    '', '', g.partner_id, %(batch)s, %(actor)s, %(label)s, %(now)s
                FROM granted AS g LEFT JOIN crm_partnerorganisation AS p ON p.id = g.partner_id
                """,
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

    def insert(self, model, columns, rows):
        self._copy(model._meta.db_table, columns, rows)


def _writer():
    return _PostgresWriter() if connection.vendor == "postgresql" else _DjangoWriter()
