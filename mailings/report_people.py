"""
Who did what with a sent mailing: the report's lists of people (who opened,
who clicked a link, who bounced, who unsubscribed…), and what staff make of
one: a static segment, or a CSV file.

Segments are made through crm.services (segment_save, segment_add_members,
each audited); files through crm.exports (formulas neutralised, the export
audited without naming anyone).
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm import exports, services
from crm.models import ConsentRecord, Segment, Supporter
from mailings.exceptions import ListRefused
from mailings.models import Delivery, DeliveryEvent, Mailing


@dataclass(frozen=True)
class ReportList:
    """One kind of list: its label, its name ({mailing} stands for the mailing), its time."""

    label: str
    name: str
    when: str  # the heading of the time column
    field: str = ""  # the Delivery field holding that time, if one does


LISTS = {
    "opened": ReportList("Opened", "People who opened {mailing}", "First opened", "opened_at"),
    "not_opened": ReportList(
        "Not opened",
        "People who were sent {mailing} and have not opened it",
        "Sent",
        "sent_at",
    ),
    "clicked": ReportList(
        "Clicked", "People who clicked a link in {mailing}", "First clicked", "clicked_at"
    ),
    "bounced": ReportList(
        "Bounced", "People whose copy of {mailing} bounced", "Bounced", "bounced_at"
    ),
    "complained": ReportList(
        "Marked as spam", "People who marked {mailing} as spam", "Marked as spam", "complained_at"
    ),
    "unsubscribed": ReportList(
        "Unsubscribed", "People who unsubscribed from {mailing}", "Unsubscribed"
    ),
    "unknown": ReportList(
        "Sending interrupted",
        "People who may not have received {mailing} (sending was interrupted)",
        "Handed to the email service",
    ),
}


def _withdrawn_here(mailing):
    # As reports.summary counts them: bounces and complaints are lists of their own.
    return ConsentRecord.objects.filter(
        mailing=mailing, action=ConsentRecord.Action.WITHDRAWN, supporter=OuterRef("supporter")
    ).exclude(method__in=[ConsentRecord.Method.BOUNCE, ConsentRecord.Method.COMPLAINT])


def deliveries(mailing: Mailing, who: str, *, link: str = "", q: str = ""):
    """Return the deliveries of `mailing` in the list `who`, newest first, each with `at`.

    `link` narrows "clicked" to the people who clicked that URL (`at` is then their
    first click on it, `link_clicks` how often they did); `q` searches email address,
    name and postcode. Erased supporters are left out: nothing about them is kept to show.
    """
    if who not in LISTS:
        raise ListRefused(f"There is no list called “{who}”; choose one of {', '.join(LISTS)}.")
    rows = (
        Delivery.objects.filter(mailing=mailing)
        .exclude(supporter__status=Supporter.Status.ERASED)
        .select_related("supporter")
    )
    kind = LISTS[who]
    if who == "not_opened":
        rows = rows.filter(
            status=Delivery.Status.SENT, opened_at__isnull=True, bounced_at__isnull=True
        )
    elif who == "unsubscribed":
        rows = rows.filter(Exists(_withdrawn_here(mailing)))
    elif who == "unknown":
        rows = rows.filter(status=Delivery.Status.UNKNOWN)
    else:
        rows = rows.filter(**{f"{kind.field}__isnull": False})
    if who == "clicked" and link:
        on_link = DeliveryEvent.objects.filter(
            delivery=OuterRef("pk"), event_type="clicked", url=link
        )
        per_delivery = on_link.order_by().values("delivery")
        rows = rows.filter(Exists(on_link)).annotate(
            link_clicks=Subquery(per_delivery.annotate(n=Count("id")).values("n")),
            at=Subquery(per_delivery.annotate(t=Min("timestamp")).values("t")),
        )
    elif who == "unsubscribed":
        first = (
            _withdrawn_here(mailing).order_by().values("supporter").annotate(t=Min("created_at"))
        )
        rows = rows.annotate(at=Subquery(first.values("t")))
    elif who == "unknown":
        rows = rows.annotate(at=Coalesce("dispatched_at", "created_at"))
    else:
        rows = rows.annotate(at=F(kind.field))
    if q.strip():
        words = q.strip()
        rows = rows.filter(
            Q(supporter__email__icontains=words)
            | Q(supporter__first_name__icontains=words)
            | Q(supporter__last_name__icontains=words)
            | Q(supporter__postcode__istartswith=words)
        )
    return rows.order_by(F("at").desc(nulls_last=True), "-pk")


def describe(mailing: Mailing, who: str, *, link: str = "", q: str = "") -> str:
    """Return the list's name as staff read it: 'People who clicked https://… in “X”'."""
    if who == "clicked" and link:
        text = f"People who clicked {link} in “{mailing}”"
    else:
        text = LISTS[who].name.format(mailing=f"“{mailing}”")
    if q.strip():
        text += f", matching “{q.strip()}”"
    return text


SEGMENT_NAME_LENGTH = Segment._meta.get_field("name").max_length


def _segment_name(mailing, who, link, q):
    """Return a segment name that is free: the list's name, shortened, numbered if taken."""
    name = describe(mailing, who, link=link, q=q)
    if len(name) > SEGMENT_NAME_LENGTH - 6:
        name = name[: SEGMENT_NAME_LENGTH - 7].rstrip() + "…"
    candidate, number = name, 2
    while Segment.objects.filter(name=candidate).exists():
        candidate, number = f"{name} ({number})", number + 1
    return candidate


def segment_create_from_list(
    *, mailing: Mailing, who: str, link: str = "", q: str = "", actor=None
) -> Segment:
    """Make a static segment of the people in a report list; return it, its size counted.

    The segment is made and filled in one transaction, through the segment
    services, so the audit trail records who made it and how many joined.
    """
    supporters = Supporter.objects.filter(
        pk__in=deliveries(mailing, who, link=link, q=q).order_by().values("supporter_id")
    )
    with transaction.atomic():
        segment = Segment(
            name=_segment_name(mailing, who, link, q),
            kind=Segment.Kind.STATIC,
            description=(
                f"Made from the report of “{mailing}” (mailing #{mailing.pk}) on "
                f"{timezone.localtime():%-d %b %Y at %H:%M}: "
                + describe(mailing, who, link=link, q=q)
                + ". A static list: it does not change as more people open or click."
            ),
        )
        services.segment_save(segment=segment, actor=actor)
        # Counts the members into segment.size too.
        services.segment_add_members(segment=segment, supporters=supporters, actor=actor)
    return segment


EXPORT_COLUMNS = ("email", "first_name", "last_name", "postcode", "status")


def list_export(
    *, mailing: Mailing, who: str, link: str = "", q: str = "", actor=None
) -> exports.ExportFile:
    """Return a report list as a CSV file (formulas neutralised), and record the export."""
    rows = deliveries(mailing, who, link=link, q=q)
    kind = LISTS[who]
    statuses = dict(Supporter.Status.choices)
    headers = ["Email", "First name", "Last name", "Postcode", "Status", kind.when]
    with_clicks = who == "clicked" and link
    if with_clicks:
        headers.append("Clicks on this link")
    table = []
    for delivery in rows.iterator(chunk_size=exports.CHUNK):
        person = delivery.supporter
        row = [
            person.email,
            person.first_name,
            person.last_name,
            person.postcode,
            statuses.get(person.status, person.status),
            delivery.at,
        ]
        if with_clicks:
            row.append(delivery.link_clicks)
        table.append(row)
    content = exports.write_table(headers=headers, rows=table, file_format="csv")
    # The audit trail names the list, never the people in it (nor a clicked URL,
    # which could be personal).
    exports.export_audit(
        actor=actor,
        source="admin",
        what="mailing report list",
        rows=len(table),
        columns=EXPORT_COLUMNS,
        file_format="csv",
        mailing=mailing.pk,
        list=who,
        one_link=bool(link),
        searched=bool(q.strip()),
    )
    stamp = timezone.localdate().isoformat()
    return exports.ExportFile(
        content=content,
        file_name=f"mailing-{mailing.pk}-{who.replace('_', '-')}-{stamp}.csv",
        content_type=exports.CONTENT_TYPES["csv"],
        rows=len(table),
    )
