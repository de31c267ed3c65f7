"""
The two bulk writers an applied plan goes through, chosen by _writer():
_DjangoWriter (the ORM, on any database) and _PostgresWriter (binary COPY and
set-based SQL), with the columns they write.
"""

from crm import sql
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


class _PostgresWriter(_DjangoWriter):
    """Bulk writes with COPY and set-based SQL (crm.sql): several times faster than the ORM.

    Rows are derived in the database where they can be (history from the
    supporter rows, subscriptions and consent records from one list of ids
    per 10,000), so only the new supporters and the filled fields travel
    from Python row by row.
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

    def subscribe(self, grants, *, batch_id, actor_id, label, now):
        sql.import_subscribe(grants, batch_id=batch_id, actor_id=actor_id, label=label, now=now)

    def insert(self, model, columns, rows):
        sql.copy_rows(model._meta.db_table, columns, rows)


def _writer():
    return _PostgresWriter() if sql.in_use() else _DjangoWriter()
