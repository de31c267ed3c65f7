"""Read-only figures for a mailing: live progress while sending, and the report after."""

import datetime
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from crm.models import ConsentRecord
from mailings import throttle
from mailings.models import Delivery, DeliveryEvent, Mailing

RATE_WINDOW_SECONDS = 30


def progress(mailing: Mailing, now=None) -> dict:
    """Return sent / failed / remaining counts, the recent rate and an ETA, as JSON-ready data."""
    now = now or timezone.now()
    counts = dict(
        Delivery.objects.filter(mailing=mailing)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    get = counts.get
    remaining = get(Delivery.Status.QUEUED, 0) + get(Delivery.Status.SENDING, 0)
    if mailing.status == Mailing.Status.SENDING:
        rate = _recent_rate(mailing, now)
    else:
        rate = _average_rate(mailing, sent=get(Delivery.Status.SENT, 0))
    eta = round(remaining / rate) if rate and remaining else None
    total = mailing.recipient_count
    return {
        "status": mailing.status,
        "status_label": mailing.get_status_display(),
        "recipients": total,
        "sent": get(Delivery.Status.SENT, 0),
        "failed": get(Delivery.Status.FAILED, 0),
        "skipped": get(Delivery.Status.SKIPPED, 0) + get(Delivery.Status.CANCELLED, 0),
        "unknown": get(Delivery.Status.UNKNOWN, 0),
        "remaining": remaining,
        "retrying": Delivery.objects.filter(
            mailing=mailing, status=Delivery.Status.QUEUED, retry_at__gt=now
        ).count()
        if remaining
        else 0,
        "rate_per_second": round(rate, 1),
        "eta_seconds": eta,
        "done_percent": round(100 * (1 - remaining / total), 1) if total else 0,
        "last_error": mailing.last_error,
        "esp_outage": _outage_note() if mailing.status == Mailing.Status.SENDING else "",
    }


def _recent_rate(mailing, now):
    """Return messages per second over the last RATE_WINDOW_SECONDS (or since the start)."""
    since = now - datetime.timedelta(seconds=RATE_WINDOW_SECONDS)
    recent = Delivery.objects.filter(
        mailing=mailing, status=Delivery.Status.SENT, sent_at__gte=since
    ).count()
    window = RATE_WINDOW_SECONDS
    if mailing.started_at and mailing.started_at > since:
        window = max(1.0, (now - mailing.started_at).total_seconds())
    return recent / window


def _average_rate(mailing, *, sent):
    """Return messages per second from the start to the last message sent.

    Once a mailing stops sending (finished, paused, cancelled), the figure
    is its sending speed: time since then is not sending time, so the rate
    stays the same however long after anyone looks.
    """
    if not sent or mailing.started_at is None:
        return 0.0
    last = Delivery.objects.filter(mailing=mailing, status=Delivery.Status.SENT).aggregate(
        last=Max("sent_at")
    )["last"]
    if last is None:
        return 0.0
    return sent / max(1.0, (last - mailing.started_at).total_seconds())


def _outage_note():
    """Say, while the ESP looks down, since when and why; else return ""."""
    outage = throttle.outage()
    if outage is None:
        return ""
    since, reason = outage
    when = timezone.localtime(datetime.datetime.fromtimestamp(since, tz=datetime.UTC))
    return (
        f"The email service has accepted nothing since {when:%H:%M} on {when:%d %b} "
        f"({reason.rstrip('.')}). Sending is waiting for it and carries on by itself "
        "when it recovers; nobody is given up on meanwhile."
    )


# A link is only made of a URL that starts, exactly, with http:// or https://:
# the URL comes from the ESP's click event, which anyone able to reach the
# webhook (or to get a link into a newsletter) chooses, and a javascript: or
# data: URL in an href runs in the staff member's admin session.
WEB_LINK = re.compile(r"https?://", re.IGNORECASE)


def _unsubscribe_like(url):
    path = urlsplit(url).path
    return url.startswith(settings.SITE_URL) and (
        path.startswith("/unsubscribe/") or path.startswith("/preferences/")
    )


def summary(mailing: Mailing) -> dict:
    """Count what happened to a mailing's deliveries: the report's headline figures.

    Rates are percentages of the messages sent. Counting reads every delivery
    of the mailing; lists and the dashboard read the copy stats_refresh keeps
    in Mailing.stats instead.
    """
    deliveries = Delivery.objects.filter(mailing=mailing)
    figures = deliveries.aggregate(
        recipients=Count("id"),
        sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
        unknown=Count("id", filter=Q(status=Delivery.Status.UNKNOWN)),
        skipped=Count("id", filter=Q(status__in=[Delivery.Status.SKIPPED, "cancelled"])),
        delivered=Count("id", filter=Q(delivered_at__isnull=False)),
        deferred=Count("id", filter=Q(deferred_at__isnull=False, delivered_at__isnull=True)),
        bounced=Count("id", filter=Q(bounced_at__isnull=False)),
        complained=Count("id", filter=Q(complained_at__isnull=False)),
        opened=Count("id", filter=Q(opened_at__isnull=False)),
        clicked=Count("id", filter=Q(clicked_at__isnull=False)),
    )
    figures["unsubscribed"] = (
        ConsentRecord.objects.filter(mailing=mailing, action=ConsentRecord.Action.WITHDRAWN)
        # Bounces and complaints withdraw consent too; they are counted on their own.
        .exclude(method__in=[ConsentRecord.Method.BOUNCE, ConsentRecord.Method.COMPLAINT])
        .values("supporter")
        .distinct()
        .count()
    )
    base = figures["sent"] or 1
    for key in ("delivered", "bounced", "complained", "opened", "clicked", "unsubscribed"):
        figures[f"{key}_percent"] = round(100 * figures[key] / base, 1)
    return figures


def stats_refresh(mailing: Mailing, now=None) -> dict:
    """Count the mailing's figures (summary) and keep them in Mailing.stats with the time."""
    figures = summary(mailing)
    now = now or timezone.now()
    Mailing.objects.filter(pk=mailing.pk).update(stats=figures, stats_counted_at=now)
    mailing.stats, mailing.stats_counted_at = figures, now
    return figures


def report(mailing: Mailing) -> dict:
    """Return the figures of the mailing's report page."""
    figures = stats_refresh(mailing)

    links = []
    personal = 0
    for row in (
        DeliveryEvent.objects.filter(mailing=mailing, event_type="clicked")
        .exclude(url="")
        .values("url")
        .annotate(people=Count("delivery", distinct=True), clicks=Count("id"))
        .order_by("-people", "url")[:200]
    ):
        if _unsubscribe_like(row["url"]):
            personal += row["people"]
        elif len(links) < 10:
            links.append({**row, "linkable": WEB_LINK.match(row["url"]) is not None})
    return {
        "figures": figures,
        "top_links": links,
        "unsubscribe_link_clicks": personal,
        "chart": chart(mailing),
    }


def chart(mailing: Mailing, width=640, height=180) -> dict:
    """Return first opens and first clicks over time as bars for an inline SVG."""
    start = mailing.started_at
    if start is None:
        return {"bars": [], "width": width, "height": height}
    spans = Delivery.objects.filter(mailing=mailing).aggregate(
        first=Min("opened_at"), last=Max("opened_at"), last_click=Max("clicked_at")
    )
    last = max(filter(None, [spans["last"], spans["last_click"]]), default=start)
    span = last - min(filter(None, [spans["first"], start]))
    trunc, step, label = (
        (TruncHour, datetime.timedelta(hours=1), "%d %b %H:00")
        if span <= datetime.timedelta(days=3)
        else (TruncDay, datetime.timedelta(days=1), "%d %b")
    )
    tz = timezone.get_current_timezone()
    series = {}
    for field, key in (("opened_at", "opens"), ("clicked_at", "clicks")):
        rows = (
            Delivery.objects.filter(mailing=mailing, **{f"{field}__isnull": False})
            .annotate(bucket=trunc(field, tzinfo=tz))
            .order_by()
            .values("bucket")
            .annotate(n=Count("id"))
        )
        for row in rows:
            series.setdefault(row["bucket"], {"opens": 0, "clicks": 0})[key] = row["n"]
    if not series:
        return {"bars": [], "width": width, "height": height}
    first, last = min(series), max(series)
    buckets = []
    moment = first
    while moment <= last and len(buckets) < 120:
        buckets.append(moment)
        moment += step
    peak = max(max(v["opens"], v["clicks"]) for v in series.values()) or 1
    slot = width / len(buckets)
    bar = max(1.0, slot / 2 - 1)
    bars = []
    for index, moment in enumerate(buckets):
        values = series.get(moment, {"opens": 0, "clicks": 0})
        x = index * slot
        opens_h = (height - 20) * values["opens"] / peak
        clicks_h = (height - 20) * values["clicks"] / peak
        bars.append(
            {
                "label": timezone.localtime(moment).strftime(label),
                "opens": values["opens"],
                "clicks": values["clicks"],
                "x_opens": round(x, 1),
                "x_clicks": round(x + bar + 1, 1),
                "y_opens": round(height - opens_h, 1),
                "y_clicks": round(height - clicks_h, 1),
                "h_opens": round(opens_h, 1),
                "h_clicks": round(clicks_h, 1),
                "w": round(bar, 1),
            }
        )
    return {"bars": bars, "width": width, "height": height, "peak": peak}
