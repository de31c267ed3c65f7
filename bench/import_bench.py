"""
Time a partner list import, a re-import and an export, against stock
django-import-export, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_imports_bench \
        .venv/bin/python bench/import_bench.py [--rows 100000] [--stock-rows 5000] [--repeat N]

Resets the CRM tables of its database (whose name must contain "bench"),
seeds rows/2 existing supporters (each subscribed to one of the file's two
interests; 2% unsubscribed, 1% suppressed, a third without a postcode), and
writes a CSV of `rows` people: half those supporters, half new, two interests
each. Then, through the same code path as the admin (SupporterResource), with
DEBUG off as in production, `repeat` times from the same starting data:

1. dry run (read, check and plan every row, store the plan) then confirm
   (check under locks that nothing the plan was made from changed, write
   supporters, history, subscriptions and consent records);
2. the same file again, now all unchanged (or skipped);

and once:

3. an export of every supporter to CSV with the default columns.

It prints seconds, rows/s, the load average, the process's peak memory and
the CPU seconds of Python and of the PostgreSQL backend for each import, the
best and median over the repeats, then imports the first `stock-rows` rows
of the same file with a stock django-import-export ModelResource (row by
row, and with use_bulk) on the same starting data, and prints the ratio.
Targets: 10,000 rows/s or more for dry run + confirm, re-import at least as
fast, peak memory under 1 GB, export under 10 s.
"""

import argparse
import csv
import io
import os
import random
import resource
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_imports_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# As in production: with DEBUG on, Django keeps the text of every SQL statement
# (for an import, tens of megabytes of addresses and ids) in memory.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

import django  # noqa: E402

django.setup()

import tablib  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from import_export import resources  # noqa: E402

from crm import exports, imports  # noqa: E402
from crm.models import (  # noqa: E402
    CampaignInterest,
    PartnerOrganisation,
    Supporter,
    Suppression,
    email_hash,
)
from crm.resources import SupporterResource  # noqa: E402

TABLES = [
    "crm_consentrecord",
    "crm_subscription",
    "crm_segmentmembership",
    "crm_supporter_tags",
    "crm_historicalsupporter",
    "crm_auditevent",
    "crm_supporter",
    "crm_importbatch_interests",
    "crm_importbatch",
    "crm_suppression",
]

SEED_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, partner_id, status, notes, link_version, created_at, updated_at
)
SELECT
    'person' || n || '@example.org', md5('person' || n) || md5('h' || n),
    'First' || n, 'Last' || n,
    CASE WHEN n %% 3 = 0 THEN '' ELSE 'SW1A ' || (n %% 9 + 1) || 'AA' END,
    'GB', '', '', 'signup_form', NULL,
    CASE WHEN n %% 50 = 0 THEN 'unsubscribed' ELSE 'active' END,
    '', 1, now() - interval '30 days', now() - interval '30 days'
FROM generate_series(1, %(existing)s) AS n
"""
SUBSCRIBE_SQL = """
INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, updated_at)
SELECT s.id, %(interest)s, 'subscribed', s.created_at, s.created_at FROM crm_supporter s
"""


def peak_mb():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset(existing, first, second):
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        cursor.execute(SEED_SQL, {"existing": existing})
        cursor.execute(SUBSCRIBE_SQL, {"interest": first.pk})
    suppressed = [
        Suppression(email_hash=email_hash(f"person{n}@example.org"), reason="complaint")
        for n in range(7, existing + 1, 100)
    ]
    Suppression.objects.bulk_create(suppressed)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def partner_file(rows, existing, interests):
    """Return the CSV bytes: every existing supporter once, then new people, shuffled."""
    people = [f"person{n}@example.org" for n in range(1, existing + 1)]
    people += [f"newcomer{n}@example.net" for n in range(1, rows - existing + 1)]
    random.Random(4).shuffle(people)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Email", "First name", "Last name", "Postcode", "Country", "Interests"])
    for n, email in enumerate(people):
        writer.writerow([email, f"Given{n}", f"Family{n}", f"E1 {n % 9 + 1}AB", "GB", interests])
    return buffer.getvalue().encode()


def server_cpu():
    """Return the CPU seconds this connection's PostgreSQL backend has used (local server)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wal_position():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        return cursor.fetchone()[0]


def wal_mb_since(start):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start])
        return float(cursor.fetchone()[0]) / 1e6


def run_ours(data, partner, label, user):
    """Preview and confirm `data` as staff do; print and return rows/s and CPU seconds."""
    load = os.getloadavg()[0]
    resource_ = SupporterResource(partner=partner)
    client, server, wal = time.process_time(), server_cpu(), wal_position()
    started = time.perf_counter()
    report = resource_.import_data(
        None, dry_run=True, file_data=data, file_name="bench.csv", user=user
    )
    dry = time.perf_counter() - started
    dry_client, dry_server = time.process_time() - client, server_cpu() - server
    assert report.batch is not None, report.preview.plan.errors[:3]
    started = time.perf_counter()
    confirmed = SupporterResource().import_data(None, dry_run=False, batch=report.batch, user=user)
    confirm = time.perf_counter() - started
    client, server = time.process_time() - client, server_cpu() - server
    rows = report.counts["rows"]
    counts = confirmed.counts
    print(
        f"{label:<34} dry run {dry:6.2f} s + confirm {confirm:6.2f} s = "
        f"{rows / (dry + confirm):9,.0f} rows/s   peak {peak_mb():6.0f} MB   load {load:.2f}"
    )
    print(
        f"    CPU: Python {client:.2f} s ({dry_client:.2f} + {client - dry_client:.2f}), "
        f"PostgreSQL backend {server:.2f} s ({dry_server:.2f} + {server - dry_server:.2f}), "
        f"{client + server:.2f} s in all; WAL written {wal_mb_since(wal):.0f} MB"
    )
    print(
        "    "
        + ", ".join(f"{counts.get(key, 0):,} {key}" for key in imports.OUTCOME_LABELS)
        + f"; written: {counts.get('created', 0):,} supporters, "
        f"{counts.get('changed', 0):,} updated, {counts.get('subscribed', 0):,} "
        "subscriptions and consent records"
    )
    return {"speed": rows / (dry + confirm), "cpu": client + server, "load": load}


class StockSupporterResource(resources.ModelResource):
    """What a stock django-import-export set-up would declare for the same file."""

    class Meta:
        model = Supporter
        fields = ("email", "first_name", "last_name", "postcode", "country")
        import_id_fields = ("email",)
        skip_unchanged = True

    def get_instance(self, instance_loader, row):
        # Rally's one lookup helper (case-insensitive, on the unique index);
        # the stock loader's email= lookup would scan the table for each row.
        return Supporter.objects.with_email(row["email"]).first()


class StockBulkSupporterResource(StockSupporterResource):
    class Meta(StockSupporterResource.Meta):
        use_bulk = True
        batch_size = 1000


def run_stock(data, rows, resource_class, label):
    text = data.decode()
    lines = text.splitlines()[: rows + 1]
    dataset = tablib.Dataset().load("\n".join(lines), format="csv")
    dataset.headers = ["email", "first_name", "last_name", "postcode", "country", "interests"]
    del dataset["interests"]
    started = time.perf_counter()
    resource_class().import_data(dataset, dry_run=True)
    dry = time.perf_counter() - started
    started = time.perf_counter()
    result = resource_class().import_data(dataset, dry_run=False)
    real = time.perf_counter() - started
    assert not result.has_errors(), result.base_errors or result.row_errors()[:3]
    speed = rows / (dry + real)
    print(
        f"{label:<34} dry run {dry:6.2f} s + import  {real:6.2f} s = {speed:9,.0f} rows/s"
        f"   ({rows:,} rows)"
    )
    return speed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stock-rows", type=int, default=5_000)
    parser.add_argument("--skip-stock", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="import the file (from the same starting data) and re-import it this many times",
    )
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    if "bench" not in connection.settings_dict["NAME"]:
        sys.exit("This benchmark empties its database: use one whose name contains 'bench'.")
    call_command("migrate", verbosity=0)
    call_command("seed_demo", supporters=0, verbosity=0)
    partner = PartnerOrganisation.objects.get(slug="waging-peace")
    first, second = CampaignInterest.objects.filter(is_public=True).order_by("position")[:2]
    existing = args.rows // 2

    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start"
    )
    data = partner_file(args.rows, existing, f"{first.slug};{second.slug}")
    print(f"File: {args.rows:,} rows, {len(data) / 1e6:.1f} MB; {existing:,} existing supporters")

    # Confirmed by a staff member, as in the admin (each consent record names them).
    user, _ = get_user_model().objects.get_or_create(
        username="bench-membership", defaults={"is_staff": True}
    )
    firsts, agains = [], []
    for _ in range(args.repeat):
        reset(existing, first, second)
        firsts.append(run_ours(data, partner, "Rally: first import", user))
        agains.append(run_ours(data, partner, "Rally: same file again (unchanged)", user))
    if args.repeat > 1:
        for label, runs in (("first import", firsts), ("same file again", agains)):
            speeds = sorted(run["speed"] for run in runs)
            cpus = sorted(run["cpu"] for run in runs)
            print(
                f"{label} over {len(runs)} runs: best {speeds[-1]:,.0f} rows/s, median "
                f"{statistics.median(speeds):,.0f} rows/s; CPU seconds (Python + PostgreSQL) "
                f"best {cpus[0]:.2f}, median {statistics.median(cpus):.2f}; load averages "
                + ", ".join(f"{run['load']:.2f}" for run in runs)
            )
    speed = max(run["speed"] for run in firsts)
    again = max(run["speed"] for run in agains)

    started = time.perf_counter()
    result = exports.supporters_export(
        supporters=Supporter.objects.all(), columns=exports.DEFAULT_COLUMNS
    )
    took = time.perf_counter() - started
    print(
        f"{'Rally: export to CSV':<34} {result.rows:,} supporters in {took:.2f} s "
        f"({len(result.content) / 1e6:.1f} MB)   peak {peak_mb():6.0f} MB"
    )

    if not args.skip_stock:
        stock_rows = min(args.stock_rows, args.rows)
        reset(existing, first, second)
        stock = run_stock(data, stock_rows, StockSupporterResource, "stock django-import-export")
        reset(existing, first, second)
        bulk = run_stock(data, stock_rows, StockBulkSupporterResource, "stock, use_bulk=True")
        print(
            f"Rally's first import is {speed / stock:.0f}x stock and {speed / bulk:.0f}x stock "
            "with use_bulk (stock imports only the supporter fields: no interests, consent "
            "or suppression checks)."
        )
    print(f"Load average {os.getloadavg()[0]:.2f} at the end.")
    targets = [
        ("import >= 10,000 rows/s", speed >= 10_000),
        ("re-import at least as fast", again >= speed * 0.95),
        ("peak memory < 1 GB", peak_mb() < 1024),
        ("export < 10 s", took < 10),
    ]
    print("Targets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets))


if __name__ == "__main__":
    main()
