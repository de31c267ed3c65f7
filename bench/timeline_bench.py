"""
Time a supporter's admin page (the head of the page and the first page of their
timeline) for a supporter with 1,000 events, among many others, on PostgreSQL.

    createdb -h 127.0.0.1 -U postgres rally_timeline_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_timeline_bench \
        .venv/bin/python bench/timeline_bench.py [--supporters 100000] [--runs 20]

Seeds the database once, set-based in SQL (later runs reuse it): the
supporters, each with a consent record, its audit event and a version in
their history; a million deliveries of 640 mailings, written mailing by
mailing as sending writes them; and one supporter, "Bench Probe", with 1,000
events: 600 mailings sent to them (40% opened, 10% clicked), among the
deliveries of others, 200 consent records given and withdrawn (each with
the audit event the services write beside it), 100 exports and revoked
links, and 100 changes to their details. Then prints the median and 95th
percentile of GET of the probe's page through Django's test client, logged
in, and of page 10 of their timeline. Target: under 200 ms.
"""

import argparse
import datetime
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_timeline_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.demo import demo_seed  # noqa: E402
from crm.models import CampaignInterest, Supporter  # noqa: E402
from mailings.models import Mailing  # noqa: E402

PROBE_EMAIL = "bench.probe@example.org"
TARGET_MS = 200

SUPPORTERS_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, partner_id, status, notes, link_version, created_at, updated_at
)
SELECT
    'supporter' || n || '@example.org', md5('supporter' || n) || md5('h' || n),
    (ARRAY['Aisha','Ben','Chloe','Daniel','Fatima','Grace','Ibrahim','Isla','Kwame','Leila'])
        [1 + n %% 10],
    (ARRAY['Ahmed','Brown','Campbell','Davies','Evans','Khan','Murphy','Patel','Smith','Young'])
        [1 + (n / 10) %% 10],
    'SW1A ' || (n %% 9 + 1) || 'AB', 'GB', '', '', 'signup_form', NULL, 'active', '', 1,
    now() - interval '3 years' + (n %% 1000) * interval '1 day', now()
FROM generate_series(1, %(count)s) AS n
"""

# Around every supporter: the sign-up consent, its audit event, their first version.
AROUND_SQL = [
    """
    INSERT INTO crm_consentrecord (
        supporter_id, interest_id, action, method, lawful_basis, wording, wording_version,
        actor_label, created_at
    )
    SELECT s.id, %(interest)s, 'granted', 'signup_form', 'consent',
        'I would like Rally to email me about the campaign topics I have chosen.', '2026-01',
        '', s.created_at
    FROM crm_supporter s
    """,
    """
    INSERT INTO crm_auditevent (kind, supporter_id, source, detail, created_at)
    SELECT 'consent_granted', s.id, 'signup_form', '{}'::jsonb, s.created_at FROM crm_supporter s
    """,
    """
    INSERT INTO crm_historicalsupporter (
        id, email, first_name, last_name, postcode, country, phone, organisation, source,
        status, notes, created_at, partner_id, history_date, history_type
    )
    SELECT id, email, first_name, last_name, postcode, country, phone, organisation, source,
        status, notes, created_at, partner_id, created_at, '+'
    FROM crm_supporter
    """,
]

# A million deliveries, laid out as sending lays them out, mailing by mailing:
# 40 weekly newsletters to a tenth of the supporters each (400,000), and the
# probe's 600 mailings, each to the probe and a hundredth of the others
# (600,600), so the probe's deliveries lie on 600 different pages of the table.
DELIVERIES_SQL = """
INSERT INTO mailings_delivery (
    mailing_id, supporter_id, status, attempts, claimed_by, esp_message_id, error,
    sent_at, delivered_at, opened_at, last_opened_at, clicked_at, last_clicked_at, created_at
)
SELECT d.mailing_id, d.supporter_id, 'sent', 1, '', '', '',
    d.started_at, d.started_at + interval '1 minute',
    CASE WHEN (d.supporter_id + d.mailing_id) %% 5 < 2 THEN d.started_at + interval '2 hours' END,
    CASE WHEN (d.supporter_id + d.mailing_id) %% 5 < 2 THEN d.started_at + interval '5 hours' END,
    CASE WHEN (d.supporter_id + d.mailing_id) %% 10 = 0 THEN d.started_at + interval '3 hours' END,
    CASE WHEN (d.supporter_id + d.mailing_id) %% 10 = 0 THEN d.started_at + interval '3 hours' END,
    d.started_at
FROM (
    SELECT m.id AS mailing_id, s.id AS supporter_id, m.started_at
    FROM mailings_mailing m JOIN crm_supporter s ON s.id %% 10 = m.id %% 10
    WHERE m.name LIKE 'Bench newsletter %%'
    UNION ALL
    SELECT m.id, s.id, m.started_at
    FROM mailings_mailing m JOIN crm_supporter s ON s.id %% 100 = m.id %% 100
    WHERE m.name LIKE 'Bench probe mailing %%' AND s.id <> %(probe)s
    UNION ALL
    SELECT m.id, %(probe)s, m.started_at
    FROM mailings_mailing m WHERE m.name LIKE 'Bench probe mailing %%'
) AS d
ORDER BY d.mailing_id, d.supporter_id
"""

# The probe's other events, over the last two years.
PROBE_SQL = [
    """
    INSERT INTO crm_consentrecord (
        supporter_id, interest_id, action, method, lawful_basis, wording, wording_version,
        actor_label, created_at
    )
    SELECT %(probe)s, %(interest)s,
        CASE WHEN n %% 2 = 0 THEN 'granted' ELSE 'withdrawn' END,
        CASE WHEN n %% 2 = 0 THEN 'email_link' ELSE 'one_click' END, 'consent',
        CASE WHEN n %% 2 = 0 THEN 'Tick the campaign topics you would like us to email you about.'
            ELSE '' END,
        '', '', now() - n * interval '3 days 1 hour'
    FROM generate_series(1, 200) AS n
    """,
    """
    INSERT INTO crm_auditevent (kind, supporter_id, source, detail, created_at)
    SELECT CASE WHEN n %% 2 = 0 THEN 'consent_granted' ELSE 'consent_withdrawn' END,
        %(probe)s, 'email_link', '{}'::jsonb, now() - n * interval '3 days 1 hour'
    FROM generate_series(1, 200) AS n
    """,
    """
    INSERT INTO crm_auditevent (kind, supporter_id, source, detail, created_at)
    SELECT CASE WHEN n %% 2 = 0 THEN 'data_exported' ELSE 'links_revoked' END,
        %(probe)s, 'staff', '{}'::jsonb, now() - n * interval '7 days 3 hours'
    FROM generate_series(1, 100) AS n
    """,
    """
    INSERT INTO crm_historicalsupporter (
        id, email, first_name, last_name, postcode, country, phone, organisation, source,
        status, notes, created_at, partner_id, history_date, history_type, history_user_id
    )
    SELECT s.id, s.email, s.first_name, s.last_name, s.postcode, s.country,
        '0700 900 ' || lpad(n::text, 3, '0'), s.organisation, s.source, s.status, s.notes,
        s.created_at, s.partner_id, now() - n * interval '7 days 5 hours', '~', %(staff)s
    FROM crm_supporter s, generate_series(1, 100) AS n
    WHERE s.id = %(probe)s
    """,
    # Their first version, made as they were created, dates from when they joined.
    """
    UPDATE crm_historicalsupporter SET history_date = s.created_at
    FROM crm_supporter s
    WHERE crm_historicalsupporter.id = s.id AND s.id = %(probe)s
        AND crm_historicalsupporter.history_type = '+'
    """,
]


def seed(total, staff):
    probe = Supporter.objects.filter(email=PROBE_EMAIL).first()
    if probe is not None:
        print(f"Reusing {Supporter.objects.count():,} supporters already in the database.")
        return probe
    demo_seed(supporters=0)  # interests, partners, tags, segments
    interest = CampaignInterest.objects.get(slug="r2p")
    started = time.perf_counter()
    now = timezone.now()
    day = datetime.timedelta(days=1)
    Mailing.objects.bulk_create(
        Mailing(
            name=f"Bench newsletter {n}",
            subject="Bench",
            status=Mailing.Status.SENT,
            started_at=now - 7 * n * day,
            finished_at=now - 7 * n * day,
        )
        for n in range(1, 41)
    )
    Mailing.objects.bulk_create(
        Mailing(
            name=f"Bench probe mailing {n}",
            subject="Bench",
            status=Mailing.Status.SENT,
            started_at=now - n * day - n * day / 24,
            finished_at=now - n * day,
        )
        for n in range(1, 601)
    )
    with connection.cursor() as cursor:
        cursor.execute(SUPPORTERS_SQL, {"count": total - 1})
        for statement in AROUND_SQL:
            cursor.execute(statement, {"interest": interest.pk})
        probe = Supporter.objects.create(
            email=PROBE_EMAIL,
            first_name="Bench",
            last_name="Probe",
            postcode="LS1 4AP",
            created_at=now - 800 * day,
        )
        cursor.execute(DELIVERIES_SQL, {"probe": probe.pk})
        for statement in PROBE_SQL:
            cursor.execute(
                statement, {"probe": probe.pk, "interest": interest.pk, "staff": staff.pk}
            )
        cursor.execute("VACUUM ANALYZE")
    print(f"Seeded {total:,} supporters in {time.perf_counter() - started:.1f}s.")
    return probe


def timed(label, func, runs):
    """Print the median and 95th percentile of `runs` calls, in wall-clock and CPU time.

    The CPU time is this process's (Django's share of the page; PostgreSQL's
    index reads are not in it): other work on the machine stretches the
    wall-clock figure, hardly this one.
    """
    func()  # warm caches and connections
    times, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = func()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    median, p95 = statistics.median(times), percentile(times, 95)
    verdict = "ok" if p95 < TARGET_MS else "SLOW"
    print(
        f"{label:<34} median {median:6.1f} ms  p95 {p95:6.1f} ms  [{verdict}]  "
        f"CPU median {statistics.median(cpu):5.1f} ms  ({result})"
    )
    return median, p95


def percentile(values, percent):
    ordered = sorted(values)
    return ordered[max(0, round(percent / 100 * len(ordered)) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    probe = seed(args.supporters, staff)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM mailings_delivery")
        deliveries = cursor.fetchone()[0]
    print(
        f"{Supporter.objects.count():,} supporters, {deliveries:,} deliveries, on PostgreSQL "
        f"{connection.cursor().connection.info.server_version}"
    )
    client = Client()
    client.force_login(staff)
    url = f"/admin/crm/supporter/{probe.pk}/change/"

    def get(params):
        def run():
            response = client.get(url, params)
            assert response.status_code == 200, response.status_code
            html = response.content.decode()
            days = re.findall(r'<time datetime="(\d{4}-\d\d-\d\d)', html)
            return f"{len(days)} entries, {days[0]} back to {days[-1]}"

        return run

    # Page 10: follow "Older entries" nine times from the newest page.
    params = {}
    for _ in range(9):
        html = client.get(url, params).content.decode()
        params = {"timeline_before": re.search(r"timeline_before=(\d+)", html).group(1)}
    with CaptureQueriesContext(connection) as first_page:
        client.get(url)
    print(f"The page takes {len(first_page)} queries.", end=" ")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        started = time.perf_counter()
        for _ in range(50):
            cursor.execute("SELECT 1")
        print(f"A round trip to PostgreSQL takes {(time.perf_counter() - started) * 20:.2f} ms.")
    timed("supporter page, timeline page 1", get({}), args.runs)
    timed("supporter page, timeline page 10", get(params), args.runs)


if __name__ == "__main__":
    main()
