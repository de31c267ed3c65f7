"""
Planning: what importing a table does, row by row, decided against the
database's state read in bulk; and the payload a batch keeps of the plan,
which the confirm step applies as it stands. Nothing here writes.
"""

import hashlib
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field

from crm.exceptions import ImportRejected
from crm.imports.columns import (
    FIELD_LABELS,
    NEW_DEFAULTS,
    PERSON_FIELDS,
    ColumnsRejected,
    guess_columns,
    match_columns,
)
from crm.imports.files import Table
from crm.imports.rows import (
    ERROR,
    MERGED,
    NEW,
    OUTCOME_LABELS,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    _Lookups,
    _merge_duplicates,
    _read_rows,
)
from crm.imports.state import SUPPORTER_STATE, _look_up, _State
from crm.models import PartnerOrganisation, Subscription, Supporter, Suppression, email_hasher

# A supporter in one of these states is never subscribed by an import.
SKIP_STATUS_REASONS = {
    Supporter.Status.UNSUBSCRIBED: ("unsubscribed", "unsubscribed from all email"),
    Supporter.Status.BOUNCED: ("bounced", "their address bounced"),
    Supporter.Status.COMPLAINED: ("complained", "they marked our email as spam"),
    Supporter.Status.ERASED: ("erased", "their data was erased at their request"),
}
SUPPRESSION_REASONS = {
    Suppression.Reason.HARD_BOUNCE: "on the suppression list: the address bounced",
    Suppression.Reason.COMPLAINT: "on the suppression list: they complained about our email",
    Suppression.Reason.ERASURE: "on the suppression list: erased at their request",
    Suppression.Reason.STAFF: "on the suppression list (added by staff)",
    Suppression.Reason.ESP_UNSUBSCRIBE: "on the suppression list: unsubscribed at the ESP",
}


@dataclass
class ImportOptions:
    """How to read a file and merge it; stored on the batch between preview and confirm.

    `columns` ({heading: field or ""}) is what staff said the file's columns
    hold; headings it leaves out are guessed (the partner's remembered
    choices, then Rally's synonyms). A preview stores the whole mapping used.
    """

    file_format: str = ""
    encoding: str = "auto"
    overwrite: bool = False
    skip_invalid: bool = False
    columns: dict = field(default_factory=dict)

    def as_dict(self):
        return {
            "file_format": self.file_format,
            "encoding": self.encoding,
            "overwrite": self.overwrite,
            "skip_invalid": self.skip_invalid,
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(**{key: data[key] for key in cls().as_dict() if key in data})


@dataclass
class ImportPlan:
    """What importing a file does, row by row."""

    rows: list
    columns: dict  # field -> heading
    ignored_columns: list
    mapping: dict  # heading -> field or "", for every filled heading
    interests: dict  # id -> CampaignInterest, for display
    partners: dict  # id -> PartnerOrganisation
    counts: dict = field(default_factory=dict)
    state: "_State | None" = None  # what the plan was made from

    @property
    def errors(self):
        return [row for row in self.rows if row.outcome == ERROR]

    @property
    def has_errors(self):
        return bool(self.counts.get(ERROR))

    def report(self):
        """Return [row number, outcome, message] for each row that needs a word of explanation."""
        return [
            [row.number, row.outcome, row.message]
            for row in self.rows
            if row.outcome in (SKIPPED, MERGED, ERROR)
        ]

    def describe(self, row):
        """Return what importing `row` does, in words (for the preview)."""
        if row.outcome in (SKIPPED, MERGED, ERROR):
            return row.message
        parts = []
        if row.outcome == UPDATED and row.changes:
            labels = ", ".join(FIELD_LABELS[name].lower() for name in row.changes)
            parts.append(f"sets {labels}")
        if row.new_interest_ids:
            names = ", ".join(
                self.interests[pk].name for pk in sorted(row.new_interest_ids, key=self._order)
            )
            parts.append(f"subscribes to {names}")
        if row.message:
            parts.append(row.message)
        return "; ".join(parts)

    def _order(self, pk):
        interest = self.interests[pk]
        return (interest.position, interest.name)

    def payload(self):
        """Return what the confirm step needs to apply this plan and check it still holds.

        Compressed JSON: every address key the plan looked up (to read the
        same state again), the new supporters to create (each with the
        position of its key) and the changes and subscriptions for existing
        ones, each already decided.
        """
        keys, new, changed = [], [], []
        for row in self.rows:
            if row.outcome in (ERROR, MERGED):
                continue
            if row.outcome == NEW:
                get = row.values.get
                new.append(
                    [
                        len(keys),
                        row.email,
                        *(get(name, NEW_DEFAULTS[name]) for name in PERSON_FIELDS),
                        row.partner_id,
                        row.new_interest_ids,
                    ]
                )
            elif row.outcome == UPDATED:
                changed.append(
                    [row.supporter_id, row.changes, row.partner_id, row.new_interest_ids]
                )
            keys.append(row.key)
        data = {"keys": keys, "new": new, "changed": changed}
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


def import_plan(
    *,
    table: Table,
    partner: PartnerOrganisation,
    interests=(),
    options: ImportOptions | None = None,
    progress=None,
) -> ImportPlan:
    """Return what importing `table` for `partner` would do, without changing anything."""
    options = options or ImportOptions()
    # A rename of the heading row, decided once: rows are read by column index.
    mapping = guess_columns(table.headers, options.columns, partner.column_mapping)
    try:
        columns, ignored = match_columns(table.headers, mapping)
    except ImportRejected as rejection:
        raise ColumnsRejected(rejection.messages[0], table=table, mapping=mapping) from None
    lookups = _Lookups(partner=partner, interests=interests)
    rows = _read_rows(table, columns, lookups)
    first_by_key = _merge_duplicates(rows)

    hasher = email_hasher()
    for row in first_by_key.values():
        row.hash = hasher(row.key)
    state = _look_up(
        list(first_by_key),
        [row.hash for row in first_by_key.values()],
        with_updated=options.overwrite,
        progress=progress,
    )
    existing, subscriptions, suppressed = state.supporters, state.subscriptions, state.suppressed

    field_index = {name: SUPPORTER_STATE.index(name) for name in PERSON_FIELDS}
    unsubscribed = Subscription.Status.UNSUBSCRIBED
    for key, row in first_by_key.items():
        reason = suppressed.get(row.hash)
        found = existing.get(key)
        if found is not None:
            row.supporter_id = found[0]
        if found is not None and found[2] in SKIP_STATUS_REASONS:
            row.outcome = SKIPPED
            row.reason, words = SKIP_STATUS_REASONS[found[2]]
            row.message = f"Row {row.number}: {words}; left unchanged."
            continue
        if reason is not None:
            row.outcome, row.reason = SKIPPED, f"suppressed_{reason}"
            row.message = f"Row {row.number}: {SUPPRESSION_REASONS.get(reason, 'suppressed')}"
            row.message += "; not imported." if found is None else "; left unchanged."
            continue
        if found is None:
            row.outcome = NEW
            row.new_interest_ids = tuple(sorted(row.interest_ids))
            continue
        current = subscriptions.get(found[0], {})
        withdrawn = [
            (pk, current[pk][1])
            for pk in row.interest_ids
            if pk in current and current[pk][0] == unsubscribed
        ]
        if withdrawn:
            row.outcome, row.reason = SKIPPED, "unsubscribed_interest"
            names = ", ".join(
                lookups.interests[pk].name + (f" on {when:%d %b %Y}" if when else "")
                for pk, when in sorted(withdrawn)
            )
            row.message = f"Row {row.number}: unsubscribed from {names}; left unchanged."
            continue
        changes, kept = {}, []
        newer = options.overwrite and (row.updated is None or row.updated > found[-1])
        for name, value in row.values.items():
            held = found[field_index[name]]
            if held == value:
                continue
            if not held or newer:
                changes[name] = value
            else:
                kept.append(FIELD_LABELS[name].lower())
        if kept:
            why = "the file's row is older" if options.overwrite else "replacing is off"
            row.message = f"kept our {', '.join(kept)} ({why})"
        row.changes = changes
        row.new_interest_ids = tuple(sorted(pk for pk in row.interest_ids if pk not in current))
        row.outcome = UPDATED if changes or row.new_interest_ids else UNCHANGED

    counts = Counter(row.outcome for row in rows)
    plan = ImportPlan(
        rows=rows,
        columns={name: str(table.headers[at]).strip() for name, at in columns.items()},
        ignored_columns=ignored,
        mapping=mapping,
        interests=lookups.interests,
        partners=lookups.partners,
        state=state,
    )
    subscribing = sum(len(row.new_interest_ids) for row in first_by_key.values())
    plan.counts = {
        "rows": len(rows),
        **{outcome: counts.get(outcome, 0) for outcome in OUTCOME_LABELS},
        "subscriptions": subscribing,
        "skip_reasons": dict(Counter(row.reason for row in rows if row.outcome == SKIPPED)),
    }
    return plan


def _preview_digest(payload, fingerprint):
    """Return the digest a batch keeps of its plan and of the state the plan was made from."""
    return hashlib.sha256(payload + fingerprint.encode()).hexdigest()
