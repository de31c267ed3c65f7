"""
The head of a supporter's page and their timeline, for the staff admin.

The timeline merges entries from several sources: crm's own (joining,
consent given and withdrawn, changes to their details, the audit trail)
and those other apps register in crm.extensions (mailings adds every
mailing sent to them). A source is `function(*, supporter, before, limit)`
returning at most `limit` entries that happened before `before`, newest
first; each reads that many rows from an index on (supporter, time), so a
page costs the same for a supporter with ten entries or ten thousand.

Pages are cut by time, not counted from the top: the link to older entries
carries the moment of the oldest entry shown (a cursor, in microseconds
since 1970), so page 40 reads no more rows than page 1.
"""

import datetime
import functools
import re
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone

from crm import extensions
from crm.models import AuditEvent, ConsentRecord, LawfulBasis, Subscription, Supporter

PER_PAGE = 25
# Entries a page shows at most when more than a page happened at one moment.
MOST_AT_ONE_MOMENT = 1000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Entry:
    """One thing that happened to a supporter, as a campaigner would say it."""

    when: datetime.datetime
    kind: str  # a short label beside the entry: "Mailing", "Consent", "Details"...
    text: str
    link: str = ""
    link_text: str = ""
    # A second line, shortened on the page with the whole of it on hover:
    # the consent wording the supporter saw, or the values a change replaced.
    detail: str = ""
    detail_title: str = ""
    # What became of a mailing: (word, when, as hover text), e.g. ("clicked", "3 Dec 14:02").
    marks: tuple = ()
    who: str = ""

    # The moment as the page shows it (formatted here: the template's date
    # filter costs a tenth of a millisecond a call, fifty calls a page).
    @property
    def when_shown(self) -> str:
        return when_text(self.when)

    @property
    def when_iso(self) -> str:
        return timezone.localtime(self.when).isoformat()

    @property
    def when_full(self) -> str:
        local = timezone.localtime(self.when)
        return f"{local:%A} {local.day} {local:%B %Y, %H:%M:%S}"


@dataclass(frozen=True)
class Figure:
    """A figure at the head of a supporter's page: "Last opened: 3 Dec 2026"."""

    label: str
    value: str
    hint: str = ""


@dataclass(frozen=True)
class Page:
    entries: list
    # The cursor of the next page (older entries), or None on the last page.
    older: int | None


def cursor_at(moment: datetime.datetime) -> int:
    """Return `moment` as whole microseconds since 1970, for a link's query string."""
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


def moment(value: str) -> datetime.datetime:
    """Return the moment a cursor names; raise ValueError for anything else."""
    micros = int(value)
    if micros <= 0:
        raise ValueError("A cursor is a positive number of microseconds.")
    return EPOCH + datetime.timedelta(microseconds=micros)


def when_text(value: datetime.datetime | None, *, time: bool = True) -> str:
    """Return `value` in the site's time zone as staff read it: "3 Dec 2026, 14:02".

    Rally's admin is in English; strftime is a tenth of the cost of Django's
    date formatting, which a page of mailings calls a hundred times.
    """
    if value is None:
        return ""
    local = timezone.localtime(value)
    return f"{local.day} {local:%b %Y, %H:%M}" if time else f"{local.day} {local:%b %Y}"


def sources():
    """Return every timeline source; at one moment, entries keep this order (joining last)."""
    return [audit_trail, detail_changes, consent_changes, *extensions.timelines, joined]


def timeline_page(supporter: Supporter, *, before=None, per_page: int = PER_PAGE) -> Page:
    """Return the page of `supporter`'s timeline that ends just before `before` (None: now).

    Each source gives its newest per_page + 1 entries before the cursor; the
    merge shows the newest per_page. Entries at the same moment are never
    split between pages (the next page starts before the oldest shown), so
    a page may hold a few fewer; more than a page at one moment (a large
    import's grants) is shown whole on a page of its own.
    """
    entries = _merged(supporter, before, per_page + 1)
    if len(entries) <= per_page:
        return Page(entries=entries, older=None)
    first_left_out = entries[per_page].when
    shown = [entry for entry in entries[:per_page] if entry.when > first_left_out]
    if not shown:
        just_after = first_left_out + datetime.timedelta(microseconds=1)
        together = _merged(supporter, just_after, MOST_AT_ONE_MOMENT)
        shown = [entry for entry in together if entry.when == first_left_out]
        if len(shown) == len(together):
            return Page(entries=shown, older=None)
    return Page(entries=shown, older=cursor_at(shown[-1].when))


def _merged(supporter, before, limit):
    entries = []
    for source in sources():
        entries.extend(source(supporter=supporter, before=before, limit=limit))
    # Stable: entries of one moment keep their sources' order.
    entries.sort(key=lambda entry: entry.when, reverse=True)
    return entries


def admin_url(model, pk, view="change") -> str:
    """Return the admin URL of a row of `model` (any app's, named through _meta)."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[pk])


# crm's sources -----------------------------------------------------------------------

JOINED = {
    Supporter.Source.SIGNUP_FORM: "Joined through the sign-up form",
    Supporter.Source.PARTNER_IMPORT: "Added from a partner's list",
    Supporter.Source.STAFF: "Added by staff",
    Supporter.Source.EVENT: "Joined at an event",
    Supporter.Source.PETITION: "Joined by signing a petition",
    Supporter.Source.OTHER: "Joined",
}


def joined(*, supporter, before, limit):
    """The moment the supporter joined, and how."""
    if limit < 1 or (before is not None and supporter.created_at >= before):
        return []
    text = JOINED.get(supporter.source, "Joined")
    if supporter.partner_id:
        text = f"{text} ({supporter.partner.name})"
    link = link_text = ""
    if supporter.import_batch_id:
        link = admin_url(Supporter.import_batch.field.related_model, supporter.import_batch_id)
        link_text = f"Import #{supporter.import_batch_id}"
    return [Entry(supporter.created_at, "Joined", text, link=link, link_text=link_text)]


# How consent was given or withdrawn, finishing "Subscribed to X ...".
HOW = {
    ConsentRecord.Method.SIGNUP_FORM: "on the sign-up form",
    ConsentRecord.Method.EMAIL_LINK: "from a link in an email",
    ConsentRecord.Method.ONE_CLICK: "with one-click unsubscribe",
    ConsentRecord.Method.STAFF: "by staff",
    ConsentRecord.Method.PARTNER_IMPORT: "by a partner list import",
    ConsentRecord.Method.COMPLAINT: "after marking an email as spam",
    ConsentRecord.Method.BOUNCE: "after their address bounced",
    ConsentRecord.Method.ESP_UNSUBSCRIBE: "at the email service",
}


def consent_changes(*, supporter, before, limit):
    """Every consent given or withdrawn, with how, on what basis and the wording they saw."""
    records = ConsentRecord.objects.filter(supporter=supporter)
    if before is not None:
        records = records.filter(created_at__lt=before)
    records = (
        records.select_related("interest", "partner", "actor")
        .defer("ip_address")
        .order_by("-created_at", "-id")[:limit]
    )
    mailing_model = ConsentRecord.mailing.field.related_model
    import_model = ConsentRecord.import_batch.field.related_model
    entries = []
    for record in records:
        topic = record.interest.name if record.interest else "all email"
        if record.action == ConsentRecord.Action.GRANTED:
            what = f"Subscribed to {topic}"
        else:
            what = f"Unsubscribed from {topic}"
        text = f"{what} {HOW.get(record.method, record.get_method_display())}"
        if record.partner:
            text += f", from {record.partner.name}'s list"
        if record.lawful_basis != LawfulBasis.CONSENT:
            text += f" (lawful basis: {record.get_lawful_basis_display().lower()})"
        link = link_text = ""
        if record.import_batch_id:
            link = admin_url(import_model, record.import_batch_id)
            link_text = f"Import #{record.import_batch_id}"
        elif record.mailing_id:
            link = admin_url(mailing_model, record.mailing_id)
            link_text = "The mailing"
        detail = detail_title = ""
        if record.wording:
            detail = f"“{record.wording}”"
            detail_title = record.wording
            if record.wording_version:
                detail_title += f" (wording version {record.wording_version})"
        elif record.wording_version:
            detail = f"Wording version {record.wording_version}"
        who = record.actor.get_username() if record.actor else record.actor_label
        entries.append(
            Entry(
                record.created_at,
                "Consent",
                text,
                link=link,
                link_text=link_text,
                detail=detail,
                detail_title=detail_title,
                who=who,
            )
        )
    return entries


# Fields whose changes the timeline shows; history keeps others too (created_at...).
CHANGED_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "postcode",
    "country",
    "phone",
    "organisation",
    "source",
    "partner",
    "status",
    "notes",
)
# Only named, never quoted: long, and for staff eyes in the form itself.
UNQUOTED = {"notes", "partner"}
# The history reason crm.imports.confirm gives to what an import writes.
IMPORT_REASON = re.compile(r"partner import (\d+)")


def detail_changes(*, supporter, before, limit):
    """Changes to the supporter's details (django-simple-history), by staff, imports or them.

    A version saved with nothing the page shows changed (their links revoked)
    is no entry, so older versions are read until `limit` entries are found
    or the history runs out.
    """
    entries = []
    versions = _versions(supporter, before, limit + 1)
    version = next(versions, None)
    while version is not None and len(entries) < limit:
        older = next(versions, None)
        # Joining has its own entry; a deleted supporter has no page.
        if version.history_type == "~":
            entry = _change_entry(version, older)
            if entry is not None:
                entries.append(entry)
        version = older
    return entries


def _versions(supporter, before, chunk):
    """Yield the supporter's versions before `before`, newest first, read `chunk` at a time."""
    history = (
        Supporter.history.filter(id=supporter.pk)
        .select_related("history_user")
        .order_by("-history_date", "-history_id")
    )
    while True:
        batch = list(
            (history if before is None else history.filter(history_date__lt=before))[:chunk]
        )
        yield from batch
        if len(batch) < chunk:
            return
        # Two versions of one supporter saved in the same microsecond would
        # lose one here; every save is its own statement, so they never are.
        before = batch[-1].history_date


@functools.cache
def _supporter_fields():
    return {field.name: field for field in Supporter._meta.concrete_fields}


def _change_entry(version, older):
    fields = _supporter_fields()
    changed = []
    for name in CHANGED_FIELDS:
        # The stored values, not the descriptors' (a Country object per read).
        attname = fields[name].attname
        if older is None or vars(version)[attname] != vars(older)[attname]:
            changed.append(name)
    if older is not None and not changed:
        return None
    if older is None:
        text = "Details edited"
        detail = ""
    else:
        names = [str(fields[name].verbose_name) for name in changed]
        text = "Changed " + _and(names)
        detail = "; ".join(
            f"{fields[name].verbose_name}: {_shown(older, fields[name])} → "
            f"{_shown(version, fields[name])}"
            for name in changed
            if name not in UNQUOTED
        )
    reason = version.history_change_reason or ""
    link = link_text = ""
    imported = IMPORT_REASON.fullmatch(reason)
    if imported:
        text += " from a partner list import"
        link = admin_url(Supporter.import_batch.field.related_model, int(imported.group(1)))
        link_text = f"Import #{imported.group(1)}"
        reason = ""
    who = version.history_user.get_username() if version.history_user else reason
    return Entry(
        version.history_date,
        "Details",
        text,
        link=link,
        link_text=link_text,
        detail=detail,
        detail_title=detail,
        who=who,
    )


def _shown(version, field):
    display = getattr(version, f"get_{field.name}_display", None)
    value = display() if display else getattr(version, field.attname)
    return str(value) if value not in ("", None) else "(empty)"


def _and(words):
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# Audit events the timeline says in words; consent events are the consent
# records above, told once.
AUDIT_TEXT = {
    AuditEvent.Kind.DATA_EXPORTED: "Everything we hold about them was exported",
    AuditEvent.Kind.LINKS_REVOKED: "Every email link they were sent was revoked",
    AuditEvent.Kind.ERASED: "Erased: personal data removed and the address suppressed",
    AuditEvent.Kind.SUPPRESSED: "Their address was put on the suppression list",
    AuditEvent.Kind.UNSUPPRESSED: "Their address was taken off the suppression list",
}
AUDIT_KIND = {
    AuditEvent.Kind.DATA_EXPORTED: "Data export",
    AuditEvent.Kind.LINKS_REVOKED: "Links",
    AuditEvent.Kind.ERASED: "Erased",
    AuditEvent.Kind.SUPPRESSED: "Suppressed",
    AuditEvent.Kind.UNSUPPRESSED: "Suppressed",
}
NOT_SHOWN = (AuditEvent.Kind.CONSENT_GRANTED, AuditEvent.Kind.CONSENT_WITHDRAWN)


def audit_trail(*, supporter, before, limit):
    """Data exports, link revocations, erasure: what staff or the system did to the record."""
    events = AuditEvent.objects.filter(supporter=supporter).exclude(kind__in=NOT_SHOWN)
    if before is not None:
        events = events.filter(created_at__lt=before)
    entries = []
    for event in events.select_related("actor").order_by("-created_at", "-id")[:limit]:
        text = AUDIT_TEXT.get(event.kind, event.get_kind_display())
        who = event.actor.get_username() if event.actor else event.source
        kind = AUDIT_KIND.get(event.kind, "Record")
        entries.append(Entry(event.created_at, kind, text, who=who))
    return entries


# The head of the page ------------------------------------------------------------------


def summary(supporter: Supporter) -> dict:
    """Return who the supporter is and how engaged, for the head of their page."""
    subscriptions = (
        Subscription.objects.filter(supporter=supporter, status=Subscription.Status.SUBSCRIBED)
        .select_related("interest")
        .order_by("interest__position", "interest__name")
    )
    figures = []
    for engagement in extensions.engagements:
        figures.extend(engagement(supporter=supporter))
    return {
        "name": str(supporter)
        if supporter.status == Supporter.Status.ERASED
        else supporter.full_name,
        "email": supporter.email,
        "status": supporter.status,
        "status_label": supporter.get_status_display(),
        "suppressed": supporter.is_suppressed(),
        "since": supporter.created_at,
        "source_label": supporter.get_source_display(),
        "partner": supporter.partner.name if supporter.partner_id else "",
        "subscriptions": [
            {"name": sub.interest.name, "since": when_text(sub.subscribed_at, time=False)}
            for sub in subscriptions
        ],
        "figures": figures,
    }
