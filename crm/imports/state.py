"""
What the database holds about a file's addresses (supporters, their
subscriptions, matching suppressions): read in chunks, locked when confirming,
and summed up as a fingerprint, so the confirm step can tell whether the plan
made from it still holds. The fingerprint is computed in Python (_State) or,
on PostgreSQL, by the database (_sql_fingerprint).
"""

import datetime
import hashlib
from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower

from crm.imports.bulk import _chunks
from crm.imports.columns import PERSON_FIELDS
from crm.models import Subscription, Supporter, Suppression, normalize_email

# Columns rows are matched on, as SQL on PostgreSQL and as ORM lookups elsewhere;
# with the type their values are sent as.
MATCH_SQL = {
    "email_hash": ("{table}.email_hash", "text"),
    "LOWER(email)": ("LOWER({table}.email)", "text"),
    "supporter_id": ("{table}.supporter_id", "bigint"),
    "id": ("{table}.id", "bigint"),
}


def _matching(queryset, column, values):
    """Filter `queryset` to rows whose `column` (a MATCH_SQL key) is one of `values`.

    On PostgreSQL the values travel as one parameter, a newline-separated
    text the server splits, which spares building and parsing thousands of
    placeholders (addresses, hashes and ids never contain a newline).
    """
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        expression, kind = MATCH_SQL[column]
        expression = expression.format(table=table)
        joined = "\n".join(map(str, values))
        # Only a fixed expression from MATCH_SQL is interpolated; values are a parameter.
        sql = f"{expression} = ANY(string_to_array(%s, E'\\n')::{kind}[])"
        return queryset.filter(RawSQL(sql, (joined,), BooleanField()))  # noqa: S611
    if column == "LOWER(email)":
        return queryset.alias(email_key=Lower("email")).filter(email_key__in=values)
    return queryset.filter(**{f"{column}__in": values})


# What a plan reads of each existing supporter; "updated_at" is added when the
# options let a newer file row replace values (the only time it matters).
SUPPORTER_STATE = ("id", "email", "status", *PERSON_FIELDS)


@dataclass
class _State:
    """What the database holds about a file's addresses: all a plan depends on."""

    supporters: dict  # address key -> SUPPORTER_STATE values (+ updated_at)
    subscriptions: dict  # supporter id -> {interest id: (status, unsubscribed_at)}
    suppressed: dict  # email hash -> suppression reason

    def fingerprint(self):
        """Return a SHA-256 of this state; equal fingerprints mean equal plans.

        It covers each matched supporter (id, address, status, the fields an
        import may fill, and when they last changed if that is read), their
        subscriptions (topic and status) and the suppression entries that
        match the file's addresses. _sql_fingerprint computes the same text
        in the database.
        """
        supporters = []
        for state in sorted(self.supporters.values()):
            if len(state) > len(SUPPORTER_STATE):
                state = (*state[:-1], (state[-1] - EPOCH) // MICROSECOND)
            supporters.append(FIELD_SEPARATOR.join(map(str, state)))
        subscriptions = sorted(
            (supporter_id, interest_id, status)
            for supporter_id, topics in self.subscriptions.items()
            for interest_id, (status, _) in topics.items()
        )
        sections = [
            RECORD_SEPARATOR.join(supporters),
            RECORD_SEPARATOR.join(
                f"{supporter_id}{FIELD_SEPARATOR}{interest_id}{FIELD_SEPARATOR}{status}"
                for supporter_id, interest_id, status in subscriptions
            ),
            RECORD_SEPARATOR.join(
                f"{email_hash}{FIELD_SEPARATOR}{reason}"
                for email_hash, reason in sorted(self.suppressed.items())
            ),
        ]
        return hashlib.sha256(SECTION_SEPARATOR.join(sections).encode()).hexdigest()


# The fingerprint's text separates fields, records and sections with ASCII's
# own separators, which no address, name or status contains in practice.
FIELD_SEPARATOR, RECORD_SEPARATOR, SECTION_SEPARATOR = "\x1f", "\x1e", "\x1d"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MICROSECOND = datetime.timedelta(microseconds=1)


def _sql_fingerprint(keys, hashes, *, with_updated):
    """Lock the supporters `keys` name and return _State.fingerprint, computed by PostgreSQL.

    One statement reads and locks the same rows _look_up would, in id order,
    and returns only the digest, so nothing travels back row by row.
    """
    fields = ", ".join(f"s.{name}" for name in SUPPORTER_STATE)
    if with_updated:
        fields += ", (extract(epoch FROM s.updated_at) * 1000000)::bigint"
    with connection.cursor() as cursor:
        cursor.execute(
            # Only fixed column names are interpolated; values are parameters.
            f"""
            WITH matched AS MATERIALIZED (
                SELECT concat_ws(%(field)s, {fields}) AS line, s.id
                FROM crm_supporter AS s
                WHERE lower(s.email) = ANY(string_to_array(%(keys)s, E'\\n'))
                ORDER BY s.id
                FOR UPDATE
            )
            SELECT encode(sha256(convert_to(concat_ws(%(section)s,
                (SELECT coalesce(string_agg(line, %(record)s ORDER BY id), '') FROM matched),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, supporter_id, interest_id, status), %(record)s
                    ORDER BY supporter_id, interest_id), '')
                 FROM crm_subscription WHERE supporter_id IN (SELECT id FROM matched)),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, email_hash, reason), %(record)s
                    ORDER BY email_hash COLLATE "C"), '')
                 FROM crm_suppression
                 WHERE email_hash = ANY(string_to_array(%(hashes)s, E'\\n')))
            ), 'UTF8')), 'hex')
            """,  # noqa: S608
            {
                "keys": "\n".join(keys),
                "hashes": "\n".join(hashes),
                "field": FIELD_SEPARATOR,
                "record": RECORD_SEPARATOR,
                "section": SECTION_SEPARATOR,
            },
        )
        return cursor.fetchone()[0]


def _look_up(keys, hashes, *, with_updated=False, lock=False, progress=None) -> _State:
    """Return the database's state for these address keys and their hashes.

    With `lock`, lock the matched supporters (call inside a transaction) so
    the state stays true until the transaction ends.
    """
    suppressed = {}
    for chunk in _chunks(hashes):
        query = _matching(Suppression.objects.all(), "email_hash", chunk)
        suppressed.update(query.values_list("email_hash", "reason"))

    columns = (*SUPPORTER_STATE, "updated_at") if with_updated else SUPPORTER_STATE
    supporters = {}
    done = 0
    for chunk in _chunks(keys):
        query = _matching(Supporter.objects.all(), "LOWER(email)", chunk).order_by("pk")
        if lock:
            query = query.select_for_update()
        for state in query.values_list(*columns):
            supporters[normalize_email(state[1])] = state
        done += len(chunk)
        if progress:
            progress("checking", done, len(keys))

    subscriptions = {}
    for chunk in _chunks(state[0] for state in supporters.values()):
        query = _matching(Subscription.objects.all(), "supporter_id", chunk)
        for supporter_id, interest_id, status, unsubscribed_at in query.values_list(
            "supporter_id", "interest_id", "status", "unsubscribed_at"
        ):
            subscriptions.setdefault(supporter_id, {})[interest_id] = (status, unsubscribed_at)
    return _State(supporters=supporters, subscriptions=subscriptions, suppressed=suppressed)
