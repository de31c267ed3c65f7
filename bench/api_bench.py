"""
Time the API's batch upsert on PostgreSQL: supporters per second, 1,000 a call.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_api REDIS_URL=redis://127.0.0.1:6379/8 \
        .venv/bin/python bench/api_bench.py [--calls 10] [--batch 1000]

Creates the database if missing and migrates it, then POSTs to
/api/supporters/batch through Django's test client in this process (the view,
validation, the service and PostgreSQL; no HTTP server or network), with DEBUG
off and a key with every scope. Three rounds of `--calls` calls each:

1. new supporters, each subscribed to one interest with consent evidence
   (supporters, their history, subscriptions, consent records, audit events);
2. the same supporters again with a new field to fill (locks, updates, history;
   their interest is already held, so nothing is subscribed);
3. the same again, unchanged (the read-only path).

Prints per round: calls, median and worst seconds a call, supporters per
second, and this process's CPU time a call (which the load of others inflates
less than wall-clock time). Target: 2,000 supporters per second or more in
round 1. The machine's load before the run is printed, as others may share its CPU.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_api")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.update(
    {
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "0",
        "RALLY_API_RATE_LIMIT": "100000/m",
        "LOG_LEVEL": "WARNING",
    }
)


def _create_database(url):
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    options = parser.parse_args()

    _create_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from crm.models import CampaignInterest
    from project.api.keys import api_key_create

    interest, _ = CampaignInterest.objects.get_or_create(
        slug="bench-r2p", defaults={"name": "Responsibility to Protect (bench)"}
    )
    _, text = api_key_create(
        name="Bench", scopes=["supporters:write", "supporters:read"], partner=None
    )
    headers = {"HTTP_AUTHORIZATION": f"Bearer {text}"}
    client = Client()
    run = secrets.token_hex(4)
    consent = {
        "wording": "Yes, email me about the campaign to prevent atrocities.",
        "wording_version": "v3",
        "method": "signup_form",
        "source": "bench",
        "given_at": "2026-11-30T10:00:00Z",
    }

    def rows(call, **extra):
        return [
            {
                "email": f"bench-{run}-{call}-{n}@example.org",
                "first_name": "Sam",
                "last_name": f"Taylor {n}",
                "postcode": "SW1A 1AA",
                "interests": [interest.slug],
                "consent": consent,
                **extra,
            }
            for n in range(options.batch)
        ]

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{options.calls} calls of {options.batch} supporters each, run {run}")
    rounds = [
        ("new, subscribed", lambda call: rows(call)),
        ("existing, a field filled", lambda call: rows(call, phone="020 7946 0000")),
        ("existing, unchanged", lambda call: rows(call, phone="020 7946 0000")),
    ]
    for label, make in rounds:
        times, cpu = [], 0.0
        for call in range(options.calls):
            body = {"supporters": make(call)}
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.post(
                "/api/supporters/batch", body, content_type="application/json", **headers
            )
            times.append(time.perf_counter() - started)
            cpu += time.process_time() - cpu_started
            if response.status_code != 200:
                raise SystemExit(f"{label}: HTTP {response.status_code}: {response.content[:300]}")
        counts = response.json()["counts"]
        rate = options.batch * len(times) / sum(times)
        print(
            f"{label:26} median {statistics.median(times):.3f} s/call, worst {max(times):.3f} s, "
            f"{rate:,.0f} supporters/s, Django's CPU {1000 * cpu / len(times):.0f} ms/call "
            f"(last call: {counts})"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
