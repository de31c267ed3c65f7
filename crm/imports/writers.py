"""
The two bulk writers of an applied plan's supporters and their history, chosen
by _writer(): _DjangoWriter (the ORM, on any database) and _PostgresWriter
(binary COPY and set-based SQL), with the columns they write. The plan's
subscriptions and consent records are written by crm's consent services
(consents_grant_bulk), like every write to a consent table.
"""

from crm import sql
from crm.imports.columns import PERSON_FIELDS
from crm.models import Supporter

# What differs between the new supporters of a batch; what they share is
# added by the writer (`fixed` in _apply).
NEW_COLUMNS = ("email", "email_hash", *PERSON_FIELDS, "partner_id")
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
        history = Supporter.history.model
        states = Supporter.objects.filter(pk__in=ids).values_list("pk", *HISTORY_FIELDS)
        rows = [(*state, now, reason, kind, actor_id) for state in states]
        history.objects.bulk_create(
            [history(**dict(zip(HISTORY_COLUMNS, row, strict=True))) for row in rows]
        )


class _PostgresWriter(_DjangoWriter):
    """Bulk writes with COPY and set-based SQL (crm.sql): several times faster than the ORM.

    History rows are derived in the database from the supporter rows, so
    only the new supporters and the filled fields travel from Python row by
    row (consents_grant_bulk does the same for subscriptions and consent
    records: one list of ids per 10,000).
    """

    def insert_supporters(self, rows, *, fixed):
        # Take ids from the table's own sequence, then COPY the rows with them.
        ids = sql.supporter_ids_reserve(len(rows))
        shared = tuple(fixed.values())
        sql.copy_rows(
            Supporter._meta.db_table,
            ("id", *NEW_COLUMNS, *fixed),
            [(pk, *values, *shared) for pk, values in zip(ids, rows, strict=True)],
        )
        return ids

    def update_supporters(self, changes, *, now):
        sql.supporters_fill(changes, fields=PERSON_FIELDS, now=now)

    def write_history(self, ids, *, kind, now, reason, actor_id):
        sql.supporters_history_write(
            ids,
            fields=HISTORY_FIELDS,
            columns=HISTORY_COLUMNS,
            kind=kind,
            now=now,
            reason=reason,
            actor_id=actor_id,
        )


def _writer():
    return _PostgresWriter() if sql.in_use() else _DjangoWriter()
