"""
The admin home (/admin/): what staff look at first.

Figures that read many rows (supporter growth over 26 weeks, where supporters
came from, how consent was given, bounce and complaint rates) are counted by
the periodic task project.tasks.dashboard_refresh and kept in the cache with
the time they were counted; a page view only reads them. If the cache holds
none (a new site, a cleared cache), the first page view counts them once and
stores them, and says so. What changes by the minute and reads few rows
(mailings sending or scheduled, imports running, the last mailings' figures
kept in Mailing.stats) is read on each view.

The figures are the same for everyone; what a staff member is shown of them
depends on their permissions (page_context).
"""

import datetime
import functools
from fractions import Fraction

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, Q
from django.db.models.functions import TruncWeek
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from crm import charts
from crm.imports import import_progress
from crm.models import AuditEvent, ConsentRecord, ImportBatch, PartnerOrganisation, Supporter
from mailings import reports
from mailings.models import Delivery, Mailing

# Versioned: figures stored by an earlier release, shaped differently, are not read.
CACHE_KEY = "rally.dashboard.figures.v1"
# Held while a page view counts the figures, so that staff opening the admin
# together on an empty cache start one count between them, not one each.
COUNTING_KEY = "rally.dashboard.counting"
WEEKS = 26
HEALTH_DAYS = 30
LAST_MAILINGS = 5
# Partners named in their chart; past that, the smallest are drawn together.
TOP_PARTNERS = 6
STATS_STALE_MINUTES = 10

# Deliverability thresholds, as percentages of the messages sent in the last
# HEALTH_DAYS days: (amber from, red from).
#
# Complaints: Gmail and Yahoo require bulk senders to keep the spam-complaint
# rate under 0.3% and ask them to stay under 0.1% (their 2024 sender rules);
# over 0.3% mail is rejected or sent to spam.
COMPLAINT_LIMITS = (Fraction(1, 10), Fraction(3, 10))
# Bounces: no mailbox provider publishes a figure, so the common rule of
# thumb: under 2% is a well-kept list; at 5% email services review the sender
# (Amazon SES puts an account under review at a 5% bounce rate and may pause
# it at 10%), so 5% and over is red.
BOUNCE_LIMITS = (Fraction(2), Fraction(5))
# Under this many messages a single bounce or complaint moves the rate a lot.
FEW_MESSAGES = 1_000


def refresh_seconds():
    return settings.RALLY_DASHBOARD_SECONDS


# -- counting (the periodic task) ---------------------------------------------------------------


def week_starts(now):
    """Return the local midnights starting each of the last WEEKS weeks (Mondays), oldest first."""
    today = timezone.localtime(now).date()
    monday = today - datetime.timedelta(days=today.weekday())
    tz = timezone.get_current_timezone()
    return [
        datetime.datetime.combine(monday - datetime.timedelta(weeks=back), datetime.time(), tz)
        for back in range(WEEKS - 1, -1, -1)
    ]


def _week(value):
    """Return the date of the Monday that starts the week TruncWeek put `value` in."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.date()


def _weekly(rows, weeks, key=None):
    """Return [count per week] from rows of {"week", "n"}, or {row[key]: [count per week]}."""
    index = {start.date(): position for position, start in enumerate(weeks)}
    out = {}
    for row in rows:
        position = index.get(_week(row["week"]))
        if position is None:  # dated in the future (a clock put wrong): no bar for it
            continue
        out.setdefault(row[key] if key else None, [0] * len(weeks))[position] += row["n"]
    return out if key else out.get(None, [0] * len(weeks))


def _per_week(queryset, *fields, count="id", distinct=False):
    """Return `queryset`'s rows counted per week of created_at (and per `fields`)."""
    return (
        queryset.annotate(week=TruncWeek("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("week", *fields)
        .annotate(n=Count(count, distinct=distinct))
    )


def figures_count(now=None) -> dict:
    """Count the dashboard's figures: supporters, their growth, sources, consent, deliverability."""
    now = now or timezone.now()
    weeks = week_starts(now)
    start = weeks[0]

    # One pass over the supporters who joined in the period gives the weekly
    # totals, the sources and the partners.
    joined_rows = list(
        _per_week(Supporter.objects.filter(created_at__gte=start), "source", "partner_id")
    )
    by_source = _weekly(joined_rows, weeks, "source")
    by_partner = _weekly([row for row in joined_rows if row["partner_id"]], weeks, "partner_id")
    joined = _weekly(joined_rows, weeks)

    # Leaving is consent withdrawn for all email (unsubscribing from
    # everything, and the hard bounces and complaints that do it), or erasure,
    # which deletes a supporter's consent records and so counts on its own.
    withdrawn = _weekly(
        _per_week(
            ConsentRecord.objects.filter(
                action=ConsentRecord.Action.WITHDRAWN, interest__isnull=True, created_at__gte=start
            ),
            count="supporter",
            distinct=True,
        ),
        weeks,
    )
    erased = _weekly(
        _per_week(AuditEvent.objects.filter(kind=AuditEvent.Kind.ERASED, created_at__gte=start)),
        weeks,
    )
    left = [a + b for a, b in zip(withdrawn, erased, strict=True)]

    methods = _weekly(
        _per_week(
            ConsentRecord.objects.filter(
                action=ConsentRecord.Action.GRANTED, created_at__gte=start
            ),
            "method",
        ),
        weeks,
        "method",
    )

    statuses = dict(Supporter.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {
        "counted_at": now,
        "weeks": [week.date() for week in weeks],
        "supporters": {
            "active": statuses.get(Supporter.Status.ACTIVE, 0),
            "on_record": sum(n for s, n in statuses.items() if s != Supporter.Status.ERASED),
        },
        "joined": joined,
        "left": left,
        "by_source": by_source,
        "by_partner": by_partner,
        "partner_names": dict(
            PartnerOrganisation.objects.filter(pk__in=by_partner).values_list("pk", "name")
        ),
        "consent_methods": methods,
        "deliverability": deliverability_count(now),
    }


def deliverability_count(now) -> dict:
    """Count the messages sent in the last HEALTH_DAYS days, and how many bounced or complained."""
    since = now - datetime.timedelta(days=HEALTH_DAYS)
    # Only mailings still sending, or finished within the window, can have
    # sent anything in it: this lets PostgreSQL read their deliveries by
    # index instead of every delivery ever made.
    recent = Mailing.objects.filter(Q(finished_at__isnull=True) | Q(finished_at__gte=since))
    figures = Delivery.objects.filter(
        mailing__in=recent.values("pk"), sent_at__gte=since
    ).aggregate(
        sent=Count("id"),
        bounced=Count("id", filter=Q(bounced_at__isnull=False)),
        complained=Count("id", filter=Q(complained_at__isnull=False)),
    )
    return {**figures, "days": HEALTH_DAYS}


def last_sent_mailings():
    return Mailing.objects.filter(status=Mailing.Status.SENT).order_by(
        F("finished_at").desc(nulls_last=True), "-pk"
    )[:LAST_MAILINGS]


def mailing_stats_refresh(now) -> int:
    """Count again stale mailing figures, and those of listed mailings never counted.

    Bounces, complaints, opens and clicks keep arriving for days after a
    mailing is sent: the mailing list's own periodic count
    (reports.stats_refresh_recent) decides which are stale, so whichever task
    runs first does it. An older listed mailing is counted only if it never
    was. Return how many were counted.
    """
    counted = reports.stats_refresh_recent(
        now=now, days=HEALTH_DAYS, older_than_minutes=STATS_STALE_MINUTES
    )
    for mailing in last_sent_mailings():
        if mailing.stats_counted_at is None:
            reports.stats_refresh(mailing, now=now)
            counted += 1
    return counted


def figures_refresh(now=None) -> dict:
    """Count the last mailings' stale figures and the dashboard's, and keep these in the cache."""
    now = now or timezone.now()
    mailing_stats_refresh(now)
    figures = figures_count(now)
    cache.set(CACHE_KEY, figures, timeout=None)
    return figures


def figures_cached():
    """Return (figures, counted now?) from the cache, counting them once if it has none.

    Return (None, False) if another request is counting them at this moment.
    Mailings' own figures are left to the periodic task: a page view never
    counts a mailing's deliveries.
    """
    figures = cache.get(CACHE_KEY)
    if figures is not None:
        return figures, False
    if not cache.add(COUNTING_KEY, True, timeout=300):
        return None, False
    try:
        figures = figures_count()
        cache.set(CACHE_KEY, figures, timeout=None)
        return figures, True
    finally:
        cache.delete(COUNTING_KEY)


# -- deliverability -----------------------------------------------------------------------------


def _percent(rate):
    return f"{float(rate):.2f}%"


def health(figures) -> list[dict]:
    """Judge the bounce and complaint rates: level (good, watch, act), the rate, what to do."""
    sent = figures["sent"]
    if not sent:
        return []
    few = (
        f" Only {sent:,} messages were sent, so each one moves the rate a lot."
        if sent < FEW_MESSAGES
        else ""
    )
    judged = []
    for name, count, (amber, red) in (
        ("Complaints", figures["complained"], COMPLAINT_LIMITS),
        ("Bounces", figures["bounced"], BOUNCE_LIMITS),
    ):
        rate = Fraction(100 * count, sent)
        level = "act" if rate >= red else "watch" if rate >= amber else "good"
        judged.append(
            {
                "name": name,
                "level": level,
                "verdict": {"good": "Good", "watch": "Watch", "act": "Act now"}[level],
                "rate": _percent(rate),
                "count": count,
                "sent": sent,
                "advice": ADVICE[name, level].format(rate=_percent(rate)) + few,
            }
        )
    return judged


ADVICE = {
    ("Complaints", "good"): (
        "Complaints are at {rate}, under the 0.1% Gmail and Yahoo ask senders to stay below."
    ),
    ("Complaints", "watch"): (
        "Complaints are at {rate}: Gmail starts rejecting at 0.3%. Stop sending to people who "
        "have not opened in six months and check every list was opted in."
    ),
    ("Complaints", "act"): (
        "Complaints are at {rate}: over 0.3%, Gmail and Yahoo reject mail or send it to spam. "
        "Pause newsletters to people who have not opened in six months, and stop mailing any "
        "imported list until you know its people opted in."
    ),
    ("Bounces", "good"): "Bounces are at {rate}, under 2%: the list is in good shape.",
    ("Bounces", "watch"): (
        "Bounces are at {rate}, over the 2% of a well-kept list. Check recent imports for old "
        "or mistyped addresses; Rally already stops mailing addresses that hard-bounced."
    ),
    ("Bounces", "act"): (
        "Bounces are at {rate}: at 5% email services such as Amazon SES review a sender and "
        "may stop its sending. Find the imported list the bounces came from and stop mailing "
        "it until it is cleaned."
    ),
}


# -- the page -----------------------------------------------------------------------------------


def _age(figures, counted_now, now):
    counted_at = figures["counted_at"]
    every = max(1, round(refresh_seconds() / 60))
    schedule = f"They are counted again every {every} minute{'s' if every != 1 else ''}."
    if counted_now:
        return {
            "text": "Figures counted just now, as none were stored yet. " + schedule,
            "stale": False,
        }
    seconds = (now - counted_at).total_seconds()
    ago = "less than a minute ago" if seconds < 60 else f"{timesince(counted_at, now)} ago"
    stale = seconds > 3 * refresh_seconds()
    text = f"Figures from {ago}. " + (
        "They should have been counted again by now: the worker that counts them may have "
        "stopped (the /healthz page says whether it runs)."
        if stale
        else schedule
    )
    return {"text": text, "stale": stale}


def _labels(figures):
    return [f"{week:%-d %b}" for week in figures["weeks"]]


def _named(weekly, names):
    """Return series named with their totals, the largest first."""
    totals = sorted(weekly.items(), key=lambda item: (-sum(item[1]), str(names.get(item[0]))))
    return [
        charts.Series(f"{names.get(key, key)} ({sum(values):,})", values)
        for key, values in totals
        if sum(values)
    ]


def _supporter_charts(figures):
    labels = _labels(figures)
    joined, left = figures["joined"], figures["left"]
    growth = charts.bars(
        labels,
        [
            charts.Series("Joined", joined),
            charts.Series("Left", [-n for n in left]),
            charts.Series("Net growth", [j - n for j, n in zip(joined, left, strict=True)], True),
        ],
        title=f"Supporters joined and left per week, last {WEEKS} weeks",
        stacked=True,
        width=900,
        height=260,
        x_name="Week starting",
        max_x_labels=13,
    )
    small = {"stacked": True, "width": 440, "height": 220, "x_name": "Week starting"}
    sources = charts.bars(
        labels,
        _named(figures["by_source"], dict(Supporter.Source.choices)),
        title="Joined per week, by source",
        **small,
    )
    partner_series = _named(figures["by_partner"], figures["partner_names"])
    if len(partner_series) > TOP_PARTNERS:
        rest = partner_series[TOP_PARTNERS - 1 :]
        others = [sum(values) for values in zip(*(s.values for s in rest), strict=True)]
        partner_series = [
            *partner_series[: TOP_PARTNERS - 1],
            charts.Series(f"{len(rest)} other partners ({sum(others):,})", others),
        ]
    partners = charts.bars(
        labels, partner_series, title="Joined per week, through partners", **small
    )
    methods = charts.bars(
        labels,
        _named(figures["consent_methods"], dict(ConsentRecord.Method.choices)),
        title="Subscriptions given per week, by how the supporter agreed",
        stacked=True,
        width=900,
        height=220,
        x_name="Week starting",
        max_x_labels=13,
    )
    return {"growth": growth, "sources": sources, "partners": partners, "methods": methods}


def _rate(stats, key, tracked):
    """Return a mailing's rate for `key` as text, or None where it is not tracked."""
    if not tracked and not stats.get(key):
        return None
    return f"{stats.get(f'{key}_percent', 0)}%"


def _mailing_rows():
    opens, clicks = settings.RALLY_TRACK_OPENS, settings.RALLY_TRACK_CLICKS
    rows = []
    for mailing in last_sent_mailings():
        stats = mailing.stats or {}
        rates = [
            _rate(stats, "opened", opens),
            _rate(stats, "clicked", clicks),
            *(_rate(stats, key, True) for key in ("unsubscribed", "bounced", "complained")),
        ]
        rows.append(
            {
                "mailing": mailing,
                "url": reverse("admin:mailings_mailing_report", args=[mailing.pk]),
                "sent": stats.get("sent", 0),
                "rates": rates if stats else None,
            }
        )
    return rows


def _mailings_now():
    # Journey emails send whenever someone reaches their step: the journey list shows them.
    active = Mailing.objects.filter(
        status__in=[Mailing.Status.SENDING, Mailing.Status.PAUSED, Mailing.Status.SCHEDULED],
        kind=Mailing.Kind.NEWSLETTER,
    ).order_by(F("scheduled_at").asc(nulls_first=True), "pk")
    return [
        {
            "mailing": mailing,
            "url": reverse("admin:mailings_mailing_change", args=[mailing.pk]),
            "progress_url": reverse("admin:mailings_mailing_progress", args=[mailing.pk]),
        }
        for mailing in active
    ]


def _imports_now():
    running = (
        ImportBatch.objects.filter(
            status__in=[ImportBatch.Status.QUEUED, ImportBatch.Status.RUNNING]
        )
        .select_related("partner")
        .defer("file_data", "plan_data")  # the uploaded file and its plan: megabytes
    )
    rows = []
    for batch in running:
        progress = import_progress(batch_id=batch.pk)
        total = progress.get("total") or batch.row_count
        done = progress.get("done", 0)
        rows.append(
            {
                "batch": batch,
                "url": reverse("admin:crm_importbatch_change", args=[batch.pk]),
                "done": done,
                "total": total,
                "percent": round(100 * done / total) if total else None,
                "stage": progress.get("stage", ""),
            }
        )
    return rows


def page_context(request, now=None) -> dict:
    """Return what the admin home shows `request.user`: only figures they may see."""
    now = now or timezone.now()
    user = request.user
    can = {
        "supporters": user.has_perm("crm.view_supporter"),
        "mailings": user.has_perm("mailings.view_mailing"),
        "imports": user.has_perm("crm.view_importbatch"),
    }
    context = {"can": can}
    if can["mailings"]:
        context["mailings_now"] = _mailings_now()
        context["last_mailings"] = rows = _mailing_rows()
        context["untracked"] = any(None in (row["rates"] or ()) for row in rows)
    if can["imports"]:
        context["imports_now"] = _imports_now()
    if not (can["supporters"] or can["mailings"]):
        return context

    figures, counted_now = figures_cached()
    if figures is None:
        context["counting"] = True
        return context
    context["age"] = _age(figures, counted_now, now)
    if can["supporters"]:
        joined, left = sum(figures["joined"]), sum(figures["left"])
        context["supporters"] = {
            **figures["supporters"],
            "joined": joined,
            "left": left,
            "net": joined - left,
            "weeks": WEEKS,
        }
        # The template keeps the drawn charts in its fragment cache, named by
        # when the figures were counted, and calls this only when it has none.
        context["charts_key"] = figures["counted_at"].isoformat()
        context["charts"] = functools.cache(functools.partial(_supporter_charts, figures))
    if can["mailings"]:
        context["deliverability"] = figures["deliverability"]
        context["health"] = health(figures["deliverability"])
    return context
