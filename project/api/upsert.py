"""
Adding and updating supporters through the API, up to BATCH_MAX a call, set-based.

The rules are the import's (crm.imports.plan): a supporter who unsubscribed
from all email, bounced, complained or was erased is left unchanged, an
address on the suppression list is never added, and an interest someone left
is never subscribed again. Subscriptions are written by crm's bulk consent
service (supporters_subscribe), which checks the same rules again under the
supporters' row locks, with the consent evidence the client sent.

A batch is one transaction: if any row is wrong nothing is written, and the
error names each wrong row and field.
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from crm import services
from crm.imports.columns import NEW_DEFAULTS, PERSON_FIELDS
from crm.imports.plan import SKIP_STATUS_REASONS, SUPPRESSION_REASONS
from crm.imports.writers import _writer
from crm.models import (
    AuditEvent,
    CampaignInterest,
    Subscription,
    Supporter,
    Suppression,
    email_hasher,
    normalize_email,
)
from project.api.exceptions import ApiInputError

FIELDS = PERSON_FIELDS


@dataclass
class Outcome:
    index: int
    id: int | None = None
    outcome: str = ""
    reason: str = ""
    subscribed: list = field(default_factory=list)
    not_subscribed: dict = field(default_factory=dict)
    values: tuple = ()  # a new supporter's row for the writer


def _evidence(consent, key):
    """Return what supporters_subscribe records of `consent`, as a hashable tuple."""
    label = (
        f"API key {key.name} ({key.prefix}); source: {consent.source}; "
        f"agreed {consent.given_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    return (consent.method, consent.wording, consent.wording_version, label[:200])


def supporters_upsert(*, rows, key) -> list[Outcome]:
    """Add or update `rows` (schemas.SupporterIn) for API `key`; return one Outcome per row.

    Existing supporters keep the values Rally holds; the row fills only what is
    empty (as an import does without "replace"). Raise ApiInputError, having
    written nothing, when a row names an unknown interest or repeats an address.
    """
    errors = []
    keys = [normalize_email(row.email) for row in rows]
    first_at = {}
    for index, email_key in enumerate(keys):
        if email_key in first_at:
            errors.append(
                (
                    f"supporters[{index}].email",
                    f"appears twice in this batch (also at supporters[{first_at[email_key]}])",
                )
            )
        first_at.setdefault(email_key, index)
    slugs = {slug for row in rows for slug in row.interests}
    interests = {i.slug: i for i in CampaignInterest.objects.filter(slug__in=slugs)}
    for index, row in enumerate(rows):
        for position, slug in enumerate(row.interests):
            if slug not in interests:
                errors.append(
                    (
                        f"supporters[{index}].interests[{position}]",
                        f"{slug!r} is not an interest (GET /api/interests lists them)",
                    )
                )
    if errors:
        raise ApiInputError("Nothing was saved: fix the rows listed and send them again.", errors)

    now = timezone.now()
    hasher = email_hasher()
    hashes = [hasher(email_key) for email_key in keys]
    outcomes = [Outcome(index=index) for index in range(len(rows))]
    with transaction.atomic():
        # Lock the existing supporters first, in id order, as every consent change does.
        # Whole rows: their history records every field.
        existing = {
            normalize_email(supporter.email): supporter
            for supporter in Supporter.objects.with_emails(keys).select_for_update().order_by("pk")
        }
        suppressed = dict(
            Suppression.objects.filter(email_hash__in=hashes).values_list("email_hash", "reason")
        )
        new, changed, takers = [], [], {}
        for index, row in enumerate(rows):
            outcome, found = outcomes[index], existing.get(keys[index])
            values = {
                name: getattr(row, name) for name in FIELDS if getattr(row, name) not in (None, "")
            }
            if found is not None and found.status in SKIP_STATUS_REASONS:
                outcome.id, outcome.outcome = found.pk, "skipped"
                outcome.reason = SKIP_STATUS_REASONS[found.status][1]
            elif hashes[index] in suppressed:
                outcome.id = found.pk if found else None
                outcome.outcome = "skipped"
                reason = suppressed[hashes[index]]
                outcome.reason = SUPPRESSION_REASONS.get(reason, "on the suppression list")
            elif found is None:
                new.append(index)
                outcome.outcome = "created"
                values = NEW_DEFAULTS | values
                outcome.values = (
                    row.email,
                    hashes[index],
                    *(values[name] for name in FIELDS),
                    key.partner_id,
                )
            else:
                fills = {name: value for name, value in values.items() if not getattr(found, name)}
                if fills:
                    changed.append((found.pk, fills))
                outcome.id = found.pk
                outcome.outcome = "updated" if fills else "unchanged"
            if outcome.outcome != "skipped" and row.interests:
                takers[index] = row

        # The import's writers: COPY and set-based SQL on PostgreSQL, the ORM elsewhere,
        # with each supporter's history.
        writer = _writer()
        history = {"now": now, "reason": f"API key {key.prefix}", "actor_id": None}
        if new:
            fixed = {
                "source": Supporter.Source.OTHER,
                "status": Supporter.Status.ACTIVE,
                "import_batch_id": None,
                "notes": "",
                "link_version": 1,
                "created_at": now,
                "updated_at": now,
            }
            ids = writer.insert_supporters([outcomes[i].values for i in new], fixed=fixed)
            writer.write_history(ids, kind="+", **history)
            for index, pk in zip(new, ids, strict=True):
                outcomes[index].id = pk
        if changed:
            writer.update_supporters(changed, now=now)
            writer.write_history([pk for pk, _ in changed], kind="~", **history)

        _subscribe(takers, outcomes, interests, key)
        counts = outcome_counts(outcomes)
        services.audit_event_add(
            AuditEvent.Kind.IMPORTED,
            source=f"api:{key.prefix}",
            via="api",
            key=key.name,
            partner=key.partner.slug if key.partner else None,
            **counts,
        )
    return outcomes


def _subscribe(takers, outcomes, interests, key):
    """Subscribe each row in `takers` ({index: row}) to its interests, by evidence and interest."""
    if not takers:
        return
    ids = [outcomes[index].id for index in takers]
    held = defaultdict(dict)
    for supporter_id, interest_id, status in Subscription.objects.filter(
        supporter_id__in=ids
    ).values_list("supporter_id", "interest_id", "status"):
        held[supporter_id][interest_id] = status
    groups = defaultdict(list)
    for index, row in takers.items():
        outcome = outcomes[index]
        for slug in dict.fromkeys(row.interests):
            status = held[outcome.id].get(interests[slug].pk)
            if status == Subscription.Status.UNSUBSCRIBED:
                outcome.not_subscribed[slug] = "they unsubscribed from it"
            elif status == Subscription.Status.SUBSCRIBED:
                outcome.not_subscribed[slug] = "already subscribed"
            else:
                groups[(slug, _evidence(row.consent, key))].append(outcome)
    for (slug, (method, wording, version, label)), group in groups.items():
        done = services.supporters_subscribe(
            supporters=Supporter.objects.filter(pk__in=[outcome.id for outcome in group]),
            interest=interests[slug],
            actor=None,
            method=method,
            actor_label=label,
            wording=wording,
            wording_version=version,
            partner=key.partner,
        )
        # The rows are locked and were checked above, so every one is subscribed;
        # should that ever differ, say so rather than report subscriptions not made.
        if done.subscribed != len(group):
            raise RuntimeError("Subscriptions changed under the batch's locks.")
        for outcome in group:
            outcome.subscribed.append(slug)


def outcome_counts(outcomes) -> dict:
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "subscriptions": 0}
    for outcome in outcomes:
        counts[outcome.outcome] += 1
        counts["subscriptions"] += len(outcome.subscribed)
    return counts
