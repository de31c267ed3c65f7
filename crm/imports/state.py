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

from django.db.models.functions import Lower

from crm import sql
from crm.imports.bulk import _chunks
from crm.imports.columns import PERSON_FIELDS
from crm.models import Subscription, Supporter, Suppression, normalize_email


def _matching(queryset, column, values):
    """Filter `queryset` to rows whose `column` (a crm.sql.MATCH_SQL key) is one of `values`.

    On PostgreSQL the values travel as one parameter, a newline-separated
    text the server splits, which spares building and parsing thousands of
    placeholders (addresses, hashes and ids never contain a newline).
    """
    if sql.in_use():
        return queryset.filter(sql.match_any(queryset.model, column, values))
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
    return sql.import_state_fingerprint(
        keys,
        hashes,
        fields=SUPPORTER_STATE,
        with_updated=with_updated,
        separators=(FIELD_SEPARATOR, RECORD_SEPARATOR, SECTION_SEPARATOR),
    )


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
