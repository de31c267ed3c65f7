"""
Supporter lists out of Rally: a segment, an admin selection or a partner's
list with chosen columns, and the partner sync export, as CSV or XLSX.

Every export goes through `write_table`, which neutralises spreadsheet
formulas in every cell, and is recorded as an AuditEvent ("exported": who,
what, how many rows; never whom). Rows are read in chunks of ids with one
query per chunk and table, so 100,000 supporters export in seconds.
"""

import csv
import datetime
import io
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    PartnerConsent,
    PartnerOrganisation,
    Subscription,
    Supporter,
    Suppression,
)
from crm.services import audit_event_add

CHUNK = 5000

FILE_FORMATS = {"csv": "CSV", "xlsx": "Excel workbook (XLSX)"}
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

# Column key -> heading. The keys are also SupporterResource's field names.
COLUMNS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "postcode": "Postcode",
    "country": "Country",
    "phone": "Phone",
    "organisation": "Organisation",
    "status": "Status",
    "source": "Source",
    "partner": "Partner",
    "interests": "Interests",
    "created_at": "Joined",
    "updated_at": "Last changed",
}
DEFAULT_COLUMNS = ("email", "first_name", "last_name", "status", "interests")

# Excel, LibreOffice and Google Sheets run a cell starting with these as a
# formula (tab and carriage return can hide one behind whitespace).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """Return `value` made safe to open in a spreadsheet: text that could run is prefixed with '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _cell(value, file_format):
    if isinstance(value, datetime.datetime):
        local = timezone.localtime(value) if timezone.is_aware(value) else value
        if file_format == "xlsx":
            return local.replace(tzinfo=None, microsecond=0)
        return local.strftime("%Y-%m-%d %H:%M")
    if value is None:
        return ""
    return escape_formula(value if isinstance(value, str) else str(value))


def write_table(*, headers, rows, file_format, title="Supporters") -> bytes:
    """Return `rows` under `headers` as a CSV or XLSX file, formulas neutralised."""
    if file_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([_cell(h, "csv") for h in headers])
        writer.writerows([_cell(value, "csv") for value in row] for row in rows)
        # A byte-order mark makes Excel read the file as UTF-8 (accented names).
        return buffer.getvalue().encode("utf-8-sig")
    if file_format == "xlsx":
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet(title=title[:31])
        sheet.append([_cell(h, "xlsx") for h in headers])
        for row in rows:
            sheet.append([_cell(value, "xlsx") for value in row])
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
    raise ValueError(f"Unknown export format {file_format!r}; use csv or xlsx.")


def _chunks(items, size=CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _subscribed_slugs(ids):
    """Return {supporter id: "slug, slug"} of current subscriptions, in interest order."""
    slugs = {}
    for supporter_id, slug in (
        Subscription.objects.filter(supporter_id__in=ids, status=Subscription.Status.SUBSCRIBED)
        .order_by("interest__position", "interest__name")
        .values_list("supporter_id", "interest__slug")
    ):
        slugs.setdefault(supporter_id, []).append(slug)
    return {supporter_id: ", ".join(names) for supporter_id, names in slugs.items()}


def supporter_rows(*, supporters, columns):
    """Yield one list per supporter in `supporters` with the values of `columns`."""
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise ValueError(f"Unknown export columns: {', '.join(unknown)}.")
    ids = list(supporters.prefetch_related(None).order_by("pk").values_list("pk", flat=True))
    model_columns = [name for name in columns if name not in ("interests", "partner")]
    fetch = ["pk", *model_columns, *(["partner_id"] if "partner" in columns else [])]
    partners = dict(PartnerOrganisation.objects.values_list("pk", "name"))
    statuses = dict(Supporter.Status.choices)
    sources = dict(Supporter.Source.choices)
    for chunk in _chunks(ids):
        interests = _subscribed_slugs(chunk) if "interests" in columns else {}
        for values in (
            Supporter.objects.filter(pk__in=chunk).order_by("pk").values(*fetch).iterator()
        ):
            row = []
            for name in columns:
                if name == "interests":
                    row.append(interests.get(values["pk"], ""))
                elif name == "partner":
                    row.append(partners.get(values["partner_id"], ""))
                elif name == "status":
                    row.append(statuses.get(values["status"], values["status"]))
                elif name == "source":
                    row.append(sources.get(values["source"], values["source"]))
                else:
                    row.append(values[name])
            yield row


def export_audit(*, actor, source, what, rows, columns, file_format, **detail):
    """Record an export in the audit trail: who, what, how many rows; never whom."""
    audit_event_add(
        AuditEvent.Kind.EXPORTED,
        actor=actor,
        source=source,
        what=what,
        rows=rows,
        columns=list(columns),
        format=file_format,
        **detail,
    )


@dataclass
class ExportFile:
    content: bytes
    file_name: str
    content_type: str
    rows: int


def supporters_export(
    *,
    supporters,
    columns=DEFAULT_COLUMNS,
    file_format: str = "csv",
    actor=None,
    source: str = "admin",
    what: str = "supporters",
    **detail,
) -> ExportFile:
    """Export `supporters` with only the chosen `columns`, and record the export.

    `what` and `detail` describe the list for the audit trail (e.g. a
    segment id); they must not contain personal data.
    """
    columns = list(columns)
    if not columns:
        raise ValueError("Choose at least one column to export.")
    rows = list(supporter_rows(supporters=supporters, columns=columns))
    content = write_table(
        headers=[COLUMNS[name] for name in columns], rows=rows, file_format=file_format
    )
    export_audit(
        actor=actor,
        source=source,
        what=what,
        rows=len(rows),
        columns=columns,
        file_format=file_format,
        **detail,
    )
    stamp = timezone.localdate().isoformat()
    return ExportFile(
        content=content,
        file_name=f"supporters-{stamp}.{file_format}",
        content_type=CONTENT_TYPES[file_format],
        rows=len(rows),
    )


# Partner sync ------------------------------------------------------------------------

SYNC_COLUMNS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "status": "Status",
    "suppress": "Do not email",
    "opted_out_since_last_sync": "Opted out since last sync",
    "opted_out_at": "Opted out at",
    "subscribed_to": "Subscribed to",
    "unsubscribed_from": "Unsubscribed from",
    # Filled only for people who opted in to the partner (on an action page)
    # and agreed to share them; see partner_opt_ins.
    "postcode": "Postcode",
    "country": "Country",
    "phone": "Phone",
    "opted_in_at": "Opted in to you at",
}
# A supporter in one of these states must not be emailed by anyone.
DO_NOT_EMAIL = {
    Supporter.Status.UNSUBSCRIBED,
    Supporter.Status.BOUNCED,
    Supporter.Status.COMPLAINED,
}


def partner_supporters(partner):
    """Return everyone who came to us from `partner`: first, or in any of its imports."""
    shared = ConsentRecord.objects.filter(supporter=OuterRef("pk"), partner=partner)
    return Supporter.objects.filter(Q(partner=partner) | Exists(shared)).exclude(
        status=Supporter.Status.ERASED
    )


def _withdrawals(ids):
    """Return {supporter id: when they last withdrew consent themselves (any topic)}."""
    return dict(
        ConsentRecord.objects.filter(supporter_id__in=ids, action=ConsentRecord.Action.WITHDRAWN)
        # An import's revert is not the supporter's choice; a partner's own
        # opt-out file is news to nobody but us.
        .exclude(
            method__in=(ConsentRecord.Method.PARTNER_IMPORT, ConsentRecord.Method.PARTNER_OPT_OUT)
        )
        .values("supporter_id")
        .annotate(latest=Max("created_at"))
        .values_list("supporter_id", "latest")
    )


def partner_opt_ins(partner):
    """Return {supporter id: (fields agreed, when)} for everyone whose latest answer to
    `partner` is yes (an opt-in on an action page, not since withdrawn)."""
    latest = {}
    for supporter_id, action, fields, when in (
        PartnerConsent.objects.filter(partner=partner)
        .exclude(supporter__status=Supporter.Status.ERASED)
        .order_by("supporter_id", "-created_at", "-id")
        .values_list("supporter_id", "action", "fields", "created_at")
    ):
        latest.setdefault(supporter_id, (action, fields, when))
    return {
        supporter_id: (fields, when)
        for supporter_id, (action, fields, when) in latest.items()
        if action == PartnerConsent.Action.GRANTED
    }


# What stops a partner emailing someone who only opted in to them: a failed or
# complained address. Leaving our list is no answer to the partner.
OPT_IN_DO_NOT_EMAIL = {Supporter.Status.BOUNCED, Supporter.Status.COMPLAINED}


def partner_sync_rows(*, partner, since=None):
    """Yield the sync rows for `partner`: opt-outs since `since` first, then everyone else.

    `since` None means every opt-out is new (the partner was never synced).
    Everyone who came from the partner is listed as before; people who
    opted in to the partner are listed too, each with their email address,
    the fields they agreed to share and when they opted in, and nothing else
    of ours (no status beyond "do not email", no topics).
    """
    brought = set(partner_supporters(partner).values_list("pk", flat=True))
    opted = partner_opt_ins(partner)
    ids = sorted(brought | set(opted))
    slugs = dict(CampaignInterest.objects.values_list("pk", "slug"))
    statuses = dict(Supporter.Status.choices)
    recent, others = [], []
    for chunk in _chunks(ids):
        subscribed, unsubscribed = {}, {}
        for supporter_id, interest_id, status in Subscription.objects.filter(
            supporter_id__in=chunk
        ).values_list("supporter_id", "interest_id", "status"):
            target = subscribed if status == Subscription.Status.SUBSCRIBED else unsubscribed
            target.setdefault(supporter_id, []).append(slugs[interest_id])
        withdrawn = _withdrawals(chunk)
        values = list(
            Supporter.objects.filter(pk__in=chunk)
            .order_by("pk")
            .values_list(
                "pk",
                "email",
                "email_hash",
                "first_name",
                "last_name",
                "status",
                "postcode",
                "country",
                "phone",
            )
        )
        suppressed = set(
            Suppression.objects.filter(email_hash__in=[value[2] for value in values]).values_list(
                "email_hash", flat=True
            )
        )
        for pk, email, hashed, first_name, last_name, status, *more in values:
            agreed, opted_in_at = opted.get(pk, ((), None))
            extra = [
                value if name in agreed else ""
                for name, value in zip(("postcode", "country", "phone"), more, strict=True)
            ]
            if pk not in brought:
                # Only opted in to the partner: only what they agreed to share.
                suppress = status in OPT_IN_DO_NOT_EMAIL or hashed in suppressed
                row = [
                    email,
                    first_name if "first_name" in agreed else "",
                    last_name if "last_name" in agreed else "",
                    "",
                    "yes" if suppress else "no",
                    "no",
                    None,
                    "",
                    "",
                    *extra,
                    opted_in_at,
                ]
                others.append(row)
                continue
            when = withdrawn.get(pk)
            suppress = status in DO_NOT_EMAIL or hashed in suppressed
            new = when is not None and (since is None or when > since)
            row = [
                email,
                first_name,
                last_name,
                statuses.get(status, status),
                "yes" if suppress else "no",
                "yes" if new else "no",
                when,
                ", ".join(sorted(subscribed.get(pk, ()))),
                ", ".join(sorted(unsubscribed.get(pk, ()))),
                *extra,
                opted_in_at,
            ]
            (recent if new else others).append(row)
    yield from recent
    yield from others


@dataclass
class PartnerSyncExport(ExportFile):
    opt_outs: int = 0
    since: datetime.datetime | None = None


def partner_sync_export(
    *,
    partner: PartnerOrganisation,
    file_format: str = "csv",
    since: datetime.datetime | None = None,
    actor=None,
    source: str = "admin",
) -> PartnerSyncExport:
    """Export `partner`'s people with their current status, and record the sync.

    Opt-outs since `since` (default: the partner's last sync) are flagged and
    listed first, so the partner can suppress them too. The partner's
    last_synced_at becomes now.
    """
    with transaction.atomic():
        partner = PartnerOrganisation.objects.select_for_update().get(pk=partner.pk)
        since = since if since is not None else partner.last_synced_at
        now = timezone.now()
        rows = list(partner_sync_rows(partner=partner, since=since))
        opt_outs = sum(1 for row in rows if row[5] == "yes")
        content = write_table(
            headers=list(SYNC_COLUMNS.values()),
            rows=rows,
            file_format=file_format,
            title=partner.name,
        )
        partner.last_synced_at = now
        partner.save(update_fields=["last_synced_at"])
        export_audit(
            actor=actor,
            source=source,
            what="partner sync",
            rows=len(rows),
            columns=SYNC_COLUMNS,
            file_format=file_format,
            partner=partner.slug,
            opt_outs=opt_outs,
            since=since.isoformat() if since else None,
        )
    return PartnerSyncExport(
        content=content,
        file_name=f"{partner.slug}-sync-{timezone.localdate().isoformat()}.{file_format}",
        content_type=CONTENT_TYPES[file_format],
        rows=len(rows),
        opt_outs=opt_outs,
        since=since,
    )
