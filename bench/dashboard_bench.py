"""
Time the admin home (the dashboard) on a million supporters and five million deliveries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_dash \
    REDIS_URL=redis://127.0.0.1:6379/7 \
        .venv/bin/python bench/dashboard_bench.py [--supporters 1000000] [--mailings 10] [--runs 20]

Seeds the database once (plain SQL, later runs reuse it): the supporters,
joined over three years from six sources and six partners, each with the
consent record of their first topic and, for those who left, its withdrawal;
and ten newsletters sent over the last 26 weeks, each to half of them (five
million deliveries, with bounces, complaints, opens and clicks). Then prints:

- the periodic task's work: counting the dashboard's figures
  (project.dashboard.figures_count), and counting again the last five mailings'
  figures when stale (mailing_stats_refresh, as the mailing list's count does);
- the page, GET /admin/ through Django's test Client as a superuser: once with
  no figures stored (it counts them), then 20 times with them in the cache
  (median and 95th percentile). Target: under 500 ms.
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_dash")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.demo import demo_seed  # noqa: E402
from crm.models import CampaignInterest, PartnerOrganisation, Supporter  # noqa: E402
from mailings.models import Delivery, Mailing  # noqa: E402
from project import dashboard  # noqa: E402

TARGET_MS = 500

SUPPORTERS_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, partner_id, status, notes, link_version, created_at, updated_at
)
SELECT
    'dash' || n || '@example.org',
    md5('dash' || n) || md5('h' || n),
    'Reader', 'Bench', 'SW1A 1AA', 'GB', '', '',
    CASE WHEN n %% 10 < 4 THEN 'partner_import'
         WHEN n %% 10 < 7 THEN 'signup_form'
         WHEN n %% 10 = 7 THEN 'petition'
         WHEN n %% 10 = 8 THEN 'event'
         ELSE 'staff' END,
    CASE WHEN n %% 10 < 4
         THEN (%(partners)s::bigint[])[1 + (n / 10) %% cardinality(%(partners)s::bigint[])] END,
    CASE WHEN n %% 100 < 2 THEN 'unsubscribed' WHEN n %% 100 = 2 THEN 'bounced'
         ELSE 'active' END,
    '', 1,
    now() - (n %% 1095) * interval '1 day' - (n %% 86400) * interval '1 second',
    now()
FROM generate_series(%(start)s, %(stop)s) AS n
"""

# Each supporter's first consent, and for those who left, the withdrawal from
# all email that leaving writes, some days after joining.
CONSENT_SQL = """
INSERT INTO crm_consentrecord (
    supporter_id, interest_id, action, method, lawful_basis, wording, wording_version,
    partner_id, actor_label, created_at
)
SELECT s.id, %(interest)s, 'granted',
    CASE WHEN s.partner_id IS NULL THEN 'signup_form' ELSE 'partner_import' END,
    'consent', '', '', s.partner_id, 'bench', s.created_at
FROM crm_supporter s WHERE s.id > %(after)s
UNION ALL
SELECT s.id, NULL, 'withdrawn',
    CASE WHEN s.status = 'bounced' THEN 'bounce' ELSE 'email_link' END,
    'consent', '', '', NULL, 'bench', LEAST(now(), s.created_at + (s.id %% 90) * interval '1 day')
FROM crm_supporter s WHERE s.id > %(after)s AND s.status <> 'active'
"""

# One newsletter to half the supporters: 1% bounce, 0.05% complain, 40% open, 5% click.
DELIVERIES_SQL = """
INSERT INTO mailings_delivery (
    mailing_id, supporter_id, status, attempts, claimed_by, esp_message_id, error,
    sent_at, created_at, delivered_at, bounced_at, complained_at,
    opened_at, last_opened_at, clicked_at, last_clicked_at
)
SELECT %(mailing)s, s.id, 'sent', 1, '', '', '',
    %(started)s + (s.id %% 3600) * interval '1 second', %(started)s,
    CASE WHEN s.id %% 97 <> 0 THEN %(started)s + interval '1 hour' END,
    CASE WHEN s.id %% 97 = 0 THEN %(started)s + interval '1 hour' END,
    CASE WHEN s.id %% 1999 = 0 THEN %(started)s + interval '1 day' END,
    CASE WHEN s.id %% 10 < 4 THEN %(started)s + interval '3 hours' END,
    CASE WHEN s.id %% 10 < 4 THEN %(started)s + interval '3 hours' END,
    CASE WHEN s.id %% 20 = 0 THEN %(started)s + interval '4 hours' END,
    CASE WHEN s.id %% 20 = 0 THEN %(started)s + interval '4 hours' END
FROM crm_supporter s
WHERE s.id %% 2 = %(half)s
"""


def seed(total, mailings):
    have = Supporter.objects.count()
    if have >= total:
        print(f"Reusing {have:,} supporters already in the database.")
    else:
        demo_seed(supporters=0)  # interests and partners
        partners = list(PartnerOrganisation.objects.values_list("pk", flat=True))
        interest = CampaignInterest.objects.order_by("position").first()
        after = Supporter.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        started = time.perf_counter()
        with connection.cursor() as cursor:
            step = 200_000
            for start in range(have + 1, total + 1, step):
                stop = min(start + step - 1, total)
                cursor.execute(SUPPORTERS_SQL, {"start": start, "stop": stop, "partners": partners})
            cursor.execute(CONSENT_SQL, {"interest": interest.pk, "after": after})
        print(f"Seeded {total - have:,} supporters in {time.perf_counter() - started:.1f}s.")

    have = Mailing.objects.filter(name__startswith="Bench: newsletter").count()
    if have >= mailings:
        print(f"Reusing {Delivery.objects.count():,} deliveries already in the database.")
        return
    started = time.perf_counter()
    now = timezone.now()
    for number in range(have, mailings):
        # Spread over the dashboard's 26 weeks, the latest three days ago.
        sent = now - datetime.timedelta(days=3 + 18 * number)
        mailing = Mailing.objects.create(
            name=f"Bench: newsletter {number + 1}",
            subject="News",
            status=Mailing.Status.SENT,
            started_at=sent,
            finished_at=sent + datetime.timedelta(hours=1),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                DELIVERIES_SQL, {"mailing": mailing.pk, "started": sent, "half": number % 2}
            )
            Mailing.objects.filter(pk=mailing.pk).update(recipient_count=cursor.rowcount)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"Seeded {Delivery.objects.count():,} deliveries in {time.perf_counter() - started:.1f}s."
    )


def report(label, times, note=""):
    ordered = sorted(times)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median = statistics.median(ordered)
    print(
        f"{label:<52} median {median:8.1f} ms   p95 {p95:8.1f} ms   "
        f"worst {ordered[-1]:8.1f} ms   ({len(times)} runs){note}"
    )
    return median, p95


def timed(func, runs, before=None):
    times = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=1_000_000)
    parser.add_argument("--mailings", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    seed(args.supporters, args.mailings)
    print(
        f"{Supporter.objects.count():,} supporters, {Delivery.objects.count():,} deliveries "
        f"on PostgreSQL {connection.cursor().connection.info.server_version}; "
        f"cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}"
    )

    def stale():
        Mailing.objects.update(stats={}, stats_counted_at=None)

    stats_times = timed(lambda: dashboard.mailing_stats_refresh(timezone.now()), 3, stale)
    report("task: count the last 5 mailings' figures", stats_times)
    figures_times = timed(dashboard.figures_count, 5)
    report("task: count the dashboard's figures", figures_times)

    User = get_user_model()
    user, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)

    def page():
        response = client.get("/admin/")
        assert response.status_code == 200, response.status_code
        assert b"Supporters now" in response.content

    cold = timed(page, 1, lambda: cache.delete(dashboard.CACHE_KEY))
    report("GET /admin/, nothing stored (counts once)", cold)
    page()  # warm the connection and templates
    median, p95 = report("GET /admin/, figures in the cache", timed(page, args.runs))
    verdict = "ok" if p95 < TARGET_MS else "SLOW"
    print(f"Target: under {TARGET_MS} ms. Median {median:.1f} ms, p95 {p95:.1f} ms: {verdict}.")


if __name__ == "__main__":
    main()
