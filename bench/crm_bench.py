"""
Time the CRM's everyday questions on a million supporters, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_bench \
        .venv/bin/python bench/crm_bench.py [--supporters 1000000] [--runs 7]

Seeds the database once (plain SQL, so a million rows take seconds rather than
minutes; later runs reuse it), then prints the median and worst time of:
a rule-based segment count, the supporter admin list with a filter, the same
list with a filter and a search by email. Target: each under 300 ms.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from crm.demo import demo_seed  # noqa: E402
from crm.models import CampaignInterest, Segment, Supporter  # noqa: E402

SEED_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, partner_id, status, notes, link_version, created_at, updated_at
)
SELECT
    'supporter' || n || '@example.org',
    md5('supporter' || n) || md5('h' || n),
    (ARRAY['Aisha','Ben','Chloe','Daniel','Fatima','Grace','Ibrahim','Isla','Kwame','Leila'])
        [1 + n %% 10],
    (ARRAY['Ahmed','Brown','Campbell','Davies','Evans','Khan','Murphy','Patel','Smith','Young'])
        [1 + (n / 10) %% 10],
    (ARRAY['SW1A','E1','N1','SE1','LS1','M1','B1','G1','EH1','CF10'])[1 + (n / 100) %% 10]
        || ' ' || (n %% 9 + 1) || 'AB',
    CASE WHEN n %% 20 = 0 THEN 'IE' ELSE 'GB' END,
    '', '',
    CASE WHEN n %% 5 < 2 THEN 'partner_import' ELSE 'signup_form' END,
    CASE WHEN n %% 5 < 2 THEN %(partner)s ELSE NULL END,
    CASE WHEN n %% 50 = 0 THEN 'unsubscribed' ELSE 'active' END,
    '', 1,
    now() - (n %% 1500) * interval '1 day',
    now()
FROM generate_series(%(start)s, %(stop)s) AS n
"""

SUBSCRIPTIONS_SQL = """
INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, updated_at)
SELECT s.id, i.id, 'subscribed', s.created_at, now()
FROM crm_supporter s
JOIN crm_campaigninterest i
    ON i.position = ((s.id %% 5) * 10) OR i.position = (((s.id + 2) %% 5) * 10)
WHERE s.id > %(after)s
"""


def seed(total):
    have = Supporter.objects.count()
    if have >= total:
        print(f"Reusing {have:,} supporters already in the database.")
        return
    demo_seed(supporters=0)  # interests, partners, tags, segments
    partner = Supporter._meta.get_field("partner").related_model.objects.first()
    after = Supporter.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        step = 200_000
        for start in range(have + 1, total + 1, step):
            stop = min(start + step - 1, total)
            cursor.execute(SEED_SQL, {"start": start, "stop": stop, "partner": partner.pk})
        cursor.execute(SUBSCRIPTIONS_SQL, {"after": after})
        cursor.execute("VACUUM ANALYZE")
    print(f"Seeded {total - have:,} supporters in {time.perf_counter() - started:.1f}s.")


def timed(label, func, runs):
    func()  # warm caches and connections
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append((time.perf_counter() - started) * 1000)
    verdict = "ok" if statistics.median(times) < 300 else "SLOW"
    print(
        f"{label:<48} median {statistics.median(times):7.1f} ms   "
        f"worst {max(times):7.1f} ms   [{verdict}]   ({result})"
    )
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    seed(args.supporters)
    print(
        f"{Supporter.objects.count():,} supporters on PostgreSQL "
        f"{connection.cursor().connection.info.server_version}"
    )

    r2p = CampaignInterest.objects.get(slug="r2p")
    segment, _ = Segment.objects.update_or_create(
        name="Bench: active R2P supporters in London postcodes, in GB",
        defaults={
            "kind": Segment.Kind.RULES,
            "rules": {
                "interests": ["r2p"],
                "postcode_prefixes": ["SW1A", "E1", "N1"],
                "countries": ["GB"],
                "statuses": ["active"],
            },
        },
    )
    User = get_user_model()
    admin_user, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin_user)
    probe = Supporter.objects.order_by("pk")[Supporter.objects.count() // 2]

    def get(params):
        def run():
            response = client.get("/admin/crm/supporter/", params)
            assert response.status_code == 200, response.status_code
            rows = response.content.count(b'class="action-select"')
            return f"{rows} rows shown"

        return run

    timed(
        "rule-based segment count", lambda: f"{segment.supporters().count():,} members", args.runs
    )
    timed("admin list, filtered by interest", get({"interest": r2p.slug}), args.runs)
    timed(
        "admin list, filtered by interest and status",
        get({"interest": r2p.slug, "status__exact": "active"}),
        args.runs,
    )
    timed("admin list, filtered by segment", get({"segment": segment.pk}), args.runs)
    timed("admin search by email", get({"q": probe.email.upper()}), args.runs)
    timed("admin search by start of surname", get({"q": "patel"}), args.runs)


if __name__ == "__main__":
    main()
