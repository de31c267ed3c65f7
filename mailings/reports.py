"""Read-only figures for a mailing: live progress while sending, and the report after."""

import datetime
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from crm import charts
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
    remaining += get(Delivery.Status.HELD, 0)  # an A/B test's rest, waiting for the winner
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


def stats_refresh_recent(*, now=None, days=30, older_than_minutes=10) -> int:
    """Count again the figures of mailings sent in the last `days` whose count is stale.

    Opens, clicks, bounces and unsubscribes keep arriving for days after a
    mailing is sent; the mailing list shows the copy kept in Mailing.stats.
    Return how many mailings were counted.
    """
    now = now or timezone.now()
    stale = Mailing.objects.filter(
        status=Mailing.Status.SENT,
        finished_at__gte=now - datetime.timedelta(days=days),
    ).filter(
        Q(stats_counted_at__isnull=True)
        | Q(stats_counted_at__lt=now - datetime.timedelta(minutes=older_than_minutes))
    )
    count = 0
    for mailing in stale.order_by("-finished_at"):
        stats_refresh(mailing, now=now)
        count += 1
    return count


def report(mailing: Mailing) -> dict:
    """Return the figures of the mailing's report page."""
    figures = stats_refresh(mailing)
    every_link, personal = links(mailing)
    return {
        "figures": figures,
        "links": every_link,
        "unsubscribe_link_clicks": personal,
        "chart": chart(mailing),
        "comparison": comparison(mailing),
    }


MAX_LINKS = 500


def links(mailing: Mailing) -> tuple[list, int]:
    """Return every link clicked in the mailing (people, clicks), and the unsubscribe clicks.

    Each supporter's unsubscribe and preferences links are their own, so they
    are counted together instead of listed one by one.
    """
    rows = []
    personal = 0
    for row in (
        DeliveryEvent.objects.filter(mailing=mailing, event_type="clicked")
        .exclude(url="")
        .values("url")
        .annotate(people=Count("delivery", distinct=True), clicks=Count("id"))
        .order_by("-people", "-clicks", "url")
    ):
        if _unsubscribe_like(row["url"]):
            personal += row["people"]
        elif len(rows) < MAX_LINKS:
            rows.append({**row, "linkable": WEB_LINK.match(row["url"]) is not None})
    return rows, personal


def chart(mailing: Mailing) -> charts.Chart:
    """Return first opens and first clicks per hour (per day past three days) since sending."""
    start = mailing.started_at
    spans = Delivery.objects.filter(mailing=mailing).aggregate(
        first=Min("opened_at"), last=Max("opened_at"), last_click=Max("clicked_at")
    )
    start = min(filter(None, [start, spans["first"]]), default=None)
    last = max(filter(None, [spans["last"], spans["last_click"]]), default=None)
    if start is None or last is None:
        return charts.bars([], [], title="First opens and first clicks")
    hourly = last - start <= datetime.timedelta(days=3)
    tz = timezone.get_current_timezone()
    if hourly:
        trunc, step = TruncHour, datetime.timedelta(hours=1)

        # Hours are keyed in UTC, so a clock change never skips or repeats one.
        def key(moment):
            return moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    else:
        trunc, step = TruncDay, datetime.timedelta(days=1)

        def key(moment):
            return moment.astimezone(tz).date()

    series = {}
    for field, name in (("opened_at", "opens"), ("clicked_at", "clicks")):
        rows = (
            Delivery.objects.filter(mailing=mailing, **{f"{field}__isnull": False})
            .annotate(bucket=trunc(field, tzinfo=tz))
            .order_by()
            .values("bucket")
            .annotate(n=Count("id"))
        )
        for row in rows:
            series.setdefault(key(row["bucket"]), {"opens": 0, "clicks": 0})[name] += row["n"]
    buckets = []
    moment = key(start)
    while moment <= key(last) and len(buckets) < MAX_BARS:
        buckets.append(moment)
        moment += step
    if hourly:
        days = {moment.astimezone(tz).date() for moment in buckets}
        labels = [
            moment.astimezone(tz).strftime("%H:00" if len(days) == 1 else "%-d %b %H:00")
            for moment in buckets
        ]
        if len(days) == 1:
            day = buckets[0].astimezone(tz)
            title = f"First opens and first clicks per hour on {day:%-d %B %Y}"
        else:
            title = "First opens and first clicks per hour"
    else:
        labels = [f"{day.day} {day:%b}" for day in buckets]
        title = "First opens and first clicks per day"
    empty = {"opens": 0, "clicks": 0}
    return charts.bars(
        labels,
        [
            charts.Series("First opens", [series.get(b, empty)["opens"] for b in buckets]),
            charts.Series("First clicks", [series.get(b, empty)["clicks"] for b in buckets]),
        ],
        title=f"{title} ({timezone.get_current_timezone_name()} time)",
        x_name="Hour" if hourly else "Day",
    )


# A chart shows at most this many hours or days from the start of sending.
MAX_BARS = 120

RATES = ("opened_percent", "clicked_percent", "unsubscribed_percent")


def comparison(mailing: Mailing, count=5) -> dict:
    """Compare the mailing with the `count` sent before it to the same interests.

    Figures come from Mailing.stats (counted when the mailing was sent and
    refreshed by beat); a mailing never counted is counted here, once.
    A mailing without interests is compared with earlier ones without interests.
    """
    if mailing.started_at is None:
        return {"rows": [], "earlier": 0}
    interests = list(mailing.interests.values_list("pk", flat=True))
    earlier = Mailing.objects.filter(
        status=Mailing.Status.SENT, started_at__lt=mailing.started_at
    ).exclude(pk=mailing.pk)
    if interests:
        earlier = earlier.filter(
            pk__in=Mailing.interests.through.objects.filter(
                campaigninterest_id__in=interests
            ).values("mailing_id")
        )
    else:
        earlier = earlier.filter(interests__isnull=True)
    earlier = list(earlier.order_by("-started_at")[:count])
    rows = []
    for other in [mailing, *earlier]:
        figures = other.stats if other.stats.get("sent") is not None else stats_refresh(other)
        rows.append({"mailing": other, "this": other.pk == mailing.pk, **_rates(figures)})
    average = None
    if earlier:
        average = {
            rate: round(sum(row[rate] for row in rows[1:]) / len(earlier), 1) for rate in RATES
        }
    chronological = rows[::-1]
    chart = charts.bars(
        [_short(row["mailing"].name) for row in chronological],
        [
            charts.Series("Opened", [row["opened_percent"] for row in chronological]),
            charts.Series("Clicked", [row["clicked_percent"] for row in chronological]),
        ],
        title="Opened and clicked, as a share of messages sent, oldest first",
        unit="%",
        x_name="Mailing",
        height=200,
    )
    return {"rows": rows, "earlier": len(earlier), "average": average, "chart": chart}


def _rates(figures):
    return {
        "sent": figures.get("sent", 0),
        **{rate: figures.get(rate, 0.0) for rate in RATES},
    }


def _short(name, limit=18):
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"
