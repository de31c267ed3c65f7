"""
Opt-ins to hear from a partner organisation, and the opt-outs partners send back.

A supporter who ticks a co-sponsoring partner's box on an action page agrees
that their email address (and the fields named in the wording) go to that
partner: partner_consent_grant records it, and the partner's sync export
(crm.exports.partner_sync_rows) then carries them. Partners send back the
people who left their list: partner_optouts_apply withdraws what that partner
brought (their opt-in, and the subscriptions granted from the partner's lists),
writes a consent record naming the partner and the file for each, and keeps a
receipt (PartnerOptOutFile). Unsubscribed topics stay unsubscribed, so a later
import never subscribes the person again (the import rules for opted-out people).
"""

import csv
import hashlib
import io
from collections import defaultdict

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm.exceptions import ConsentRefused
from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    PartnerConsent,
    PartnerOptOutFile,
    PartnerOrganisation,
    Subscription,
    Supporter,
    normalize_email,
)
from crm.services.audit import audit_event_add
from crm.services.consent import BULK_BATCH_SIZE, UNMAILABLE_STATUSES, _record_consent

# Supporter fields a partner opt-in may share besides the email address.
SHAREABLE_FIELDS = ("first_name", "last_name", "postcode", "country", "phone")
# Rows kept on a receipt for each list (unmatched, invalid): enough to act on.
RECEIPT_ROWS = 5_000


def partner_consent_current(*, supporter: Supporter, partner: PartnerOrganisation):
    """Return the supporter's latest partner consent record for `partner`, or None."""
    return (
        PartnerConsent.objects.filter(supporter=supporter, partner=partner)
        .order_by("-created_at", "-id")
        .first()
    )


def partner_consent_grant(
    *,
    supporter: Supporter,
    partner: PartnerOrganisation,
    fields=(),
    wording: str = "",
    wording_version: str = "",
    page_url: str = "",
    source: str = "",
    ip_address: str | None = None,
) -> PartnerConsent:
    """Record that `supporter` agreed to hear from `partner`, sharing `fields`; return the record.

    Each choice is a record of its own (the wording differs from page to
    page); the fields shared are those of this opt-in and any still-current
    one before it. Refuse (ConsentRefused) for a bounced, complained, erased
    or suppressed supporter: Rally does not hand on an address that failed or
    whose owner objected.
    """
    unknown = set(fields) - set(SHAREABLE_FIELDS)
    if unknown:
        raise ValueError(
            f"Cannot share {', '.join(sorted(unknown))}; choose from {', '.join(SHAREABLE_FIELDS)}."
        )
    with transaction.atomic():
        supporter = Supporter.objects.select_for_update().get(pk=supporter.pk)
        if supporter.status in UNMAILABLE_STATUSES or supporter.is_suppressed():
            raise ConsentRefused(
                "This supporter's address cannot be shared: it is suppressed, bounced, "
                "complained or erased."
            )
        current = partner_consent_current(supporter=supporter, partner=partner)
        shared = set(fields)
        if current is not None and current.action == PartnerConsent.Action.GRANTED:
            shared |= set(current.fields)
        record = PartnerConsent.objects.create(
            supporter=supporter,
            partner=partner,
            action=PartnerConsent.Action.GRANTED,
            fields=[name for name in SHAREABLE_FIELDS if name in shared],
            wording=wording,
            wording_version=wording_version,
            page_url=page_url[:500],
            source=source[:200],
            ip_address=ip_address,
        )
        audit_event_add(
            AuditEvent.Kind.CONSENT_GRANTED,
            supporter=supporter,
            source=source[:200] or "partner opt-in",
            partner=partner.slug,
            method=ConsentRecord.Method.ACTION_PAGE,
        )
    return record


def partner_consents_erase(*, supporter: Supporter) -> int:
    """Delete the supporter's partner consent records (erasure only); return how many.

    Run inside supporter_erase's transaction (registered in crm.extensions by
    the app that collects them), which removes their other consent records too.
    """
    deleted, _ = PartnerConsent.objects.filter(supporter=supporter).delete()
    return deleted


# Opt-outs sent back by partners ----------------------------------------------------


def read_optout_file(content: bytes) -> list[str]:
    """Return the addresses in a partner's opt-out file, one per row, in row order.

    A CSV (or a plain list, one address a line) in UTF-8, with or without a
    header: the column is the first whose heading contains "email", or the
    first column when the first row is itself an address.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        return []
    column = 0
    header = [cell.strip().lower() for cell in rows[0]]
    if "@" not in rows[0][0]:
        column = next((i for i, cell in enumerate(header) if "email" in cell.replace("-", "")), 0)
        rows = rows[1:]
    return [row[column].strip() if column < len(row) else "" for row in rows]


def _brought_by(*, partner, supporter_ids):
    """Return [(subscription id, supporter id, interest id)] subscribed on `partner`'s word.

    A subscription is the partner's when the consent that last granted it
    names the partner (a partner import); the supporter's own sign-ups stand.
    """
    last_grant = (
        ConsentRecord.objects.filter(
            supporter=OuterRef("supporter_id"),
            interest=OuterRef("interest_id"),
            action=ConsentRecord.Action.GRANTED,
        )
        .order_by("-created_at", "-id")
        .values("partner_id")[:1]
    )
    return list(
        Subscription.objects.filter(
            supporter_id__in=supporter_ids, status=Subscription.Status.SUBSCRIBED
        )
        .annotate(granted_by=Subquery(last_grant))
        .filter(granted_by=partner.pk)
        .order_by("supporter_id", "interest_id")
        .values_list("pk", "supporter_id", "interest_id")
    )


def _opted_in(*, partner, supporter_ids):
    """Return {supporter id: fields} of those whose latest answer to `partner` is yes."""
    latest = PartnerConsent.objects.latest_action(partner=partner)
    granted = (
        Supporter.objects.filter(pk__in=supporter_ids)
        .annotate(answer=Subquery(latest))
        .filter(answer=PartnerConsent.Action.GRANTED)
        .values_list("pk", flat=True)
    )
    return set(granted)


def partner_optouts_apply(
    *,
    partner: PartnerOrganisation,
    file=None,
    rows=None,
    file_name: str = "",
    actor=None,
) -> PartnerOptOutFile:
    """Withdraw what `partner` brought for each address it sent back; return the receipt.

    Give the partner's file (bytes or a file object, read by read_optout_file)
    or `rows` (addresses, as the API receives them). For each address that
    matches a supporter: their opt-in to the partner is withdrawn, and so is
    every subscription whose consent came from the partner's list, each with
    a consent record (method "opt-out sent by a partner") naming the partner
    and the receipt, and an audit event. Their own sign-ups to the charity
    stand. One transaction: the whole file applies, or none of it. The
    receipt keeps the counts and the rows that matched nobody or held no
    address; it never names a supporter.
    """
    if file is not None:
        content = file if isinstance(file, bytes) else file.read()
        file_name = file_name or getattr(file, "name", "") or "opt-outs.csv"
        addresses = read_optout_file(content)
    elif rows is not None:
        addresses = [str(row).strip() for row in rows]
        content = "\n".join(addresses).encode()
        file_name = file_name or "opt-outs (API)"
    else:
        raise ValueError("Give the partner's opt-out file or its rows.")
    invalid, wanted = [], {}
    for number, address in enumerate(addresses, start=1):
        try:
            validate_email(address)
        except ValidationError:
            invalid.append([number, address[:254]])
            continue
        wanted.setdefault(normalize_email(address), []).append(number)
    now = timezone.now()
    with transaction.atomic():
        receipt = PartnerOptOutFile.objects.create(
            partner=partner,
            file_name=file_name[:255],
            file_hash=hashlib.sha256(content).hexdigest(),
            rows=len(addresses),
            created_by=actor,
            created_at=now,
        )
        found = {}
        keys = list(wanted)
        for start in range(0, len(keys), BULK_BATCH_SIZE):
            chunk = keys[start : start + BULK_BATCH_SIZE]
            for pk, email in (
                Supporter.objects.with_emails(chunk)
                .exclude(status=Supporter.Status.ERASED)
                .values_list("pk", "email")
            ):
                found[normalize_email(email)] = pk
        unmatched = sorted(
            [number, address]
            for address, numbers in wanted.items()
            if address not in found
            for number in numbers
        )
        ids = sorted(set(found.values()))
        label = f"opt-out file {file_name} (receipt #{receipt.pk})"[:200]
        withdrawn_people = set()
        subscriptions = opt_ins = 0
        for start in range(0, len(ids), BULK_BATCH_SIZE):
            chunk = ids[start : start + BULK_BATCH_SIZE]
            # Lock the people first, as every change of consent does.
            list(
                Supporter.objects.filter(pk__in=chunk)
                .select_for_update()
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            brought = _brought_by(partner=partner, supporter_ids=chunk)
            Subscription.objects.filter(pk__in=[pk for pk, _, _ in brought]).update(
                status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now
            )
            by_interest = defaultdict(list)
            for _, supporter_id, interest_id in brought:
                by_interest[interest_id].append(supporter_id)
            interests = CampaignInterest.objects.in_bulk(list(by_interest))
            for interest_id, supporter_ids in by_interest.items():
                _record_consent(
                    supporter_ids=supporter_ids,
                    topics=[interests[interest_id]],
                    action=ConsentRecord.Action.WITHDRAWN,
                    method=ConsentRecord.Method.PARTNER_OPT_OUT,
                    actor=actor,
                    actor_label=label,
                    now=now,
                    partner=partner,
                    lawful_basis=partner.lawful_basis,
                )
            subscriptions += len(brought)
            withdrawn_people.update(supporter_id for _, supporter_id, _ in brought)
            opted_in = sorted(_opted_in(partner=partner, supporter_ids=chunk))
            PartnerConsent.objects.bulk_create(
                PartnerConsent(
                    supporter_id=supporter_id,
                    partner=partner,
                    action=PartnerConsent.Action.WITHDRAWN,
                    source=label,
                    optout_file=receipt,
                    created_at=now,
                )
                for supporter_id in opted_in
            )
            AuditEvent.objects.bulk_create(
                AuditEvent(
                    kind=AuditEvent.Kind.CONSENT_WITHDRAWN,
                    supporter_id=supporter_id,
                    actor=actor,
                    source=label,
                    detail={"partner": partner.slug, "method": "partner_opt_out"},
                    created_at=now,
                )
                for supporter_id in opted_in
            )
            opt_ins += len(opted_in)
            withdrawn_people.update(opted_in)
        receipt.matched = sum(len(wanted[address]) for address in found)
        receipt.withdrawn = len(withdrawn_people)
        receipt.subscriptions_withdrawn = subscriptions
        receipt.opt_ins_withdrawn = opt_ins
        receipt.unmatched = unmatched[:RECEIPT_ROWS]
        receipt.invalid = invalid[:RECEIPT_ROWS]
        receipt.save()
        audit_event_add(
            AuditEvent.Kind.CONSENT_WITHDRAWN,
            actor=actor,
            source=label,
            what="partner opt-out file",
            partner=partner.slug,
            receipt=receipt.pk,
            rows=receipt.rows,
            matched=receipt.matched,
            withdrawn=receipt.withdrawn,
        )
    return receipt
