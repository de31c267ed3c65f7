"""
Compare the two reads behind every supporter link, as plain SQL and as ORM querysets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_links \
        .venv/bin/python bench/link_reads_bench.py [--calls 5000] [--rounds 5]

Every preference-centre page and one-click unsubscribe reads the supporter (with
"are they suppressed?") and the interests with the supporter's choices. mailings/sql.py
writes both as plain SQL; this script times them against the same reads written with
the ORM (only(), annotate(Exists(...))), alternating the two in rounds on the same
connection, and prints the process CPU per call (Python's share, what the ORM adds)
and the wall time per call (with PostgreSQL's). The two must return the same rows.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_links")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Exists, OuterRef  # noqa: E402

from crm.demo import demo_seed  # noqa: E402
from crm.models import CampaignInterest, Subscription, Supporter, Suppression  # noqa: E402
from crm.sql import INTEREST_FIELDS  # noqa: E402
from mailings import sql  # noqa: E402
from mailings.tokens import LINK_FIELDS  # noqa: E402


def supporter_orm(supporter_id):
    suppressed = Suppression.objects.filter(email_hash=OuterRef("email_hash"))
    return list(
        Supporter.objects.only(*LINK_FIELDS)
        .annotate(suppressed=Exists(suppressed))
        .filter(pk=supporter_id)
    )


def interests_orm(supporter_id):
    subscribed = Subscription.objects.filter(
        interest=OuterRef("pk"),
        supporter_id=supporter_id,
        status=Subscription.Status.SUBSCRIBED,
    )
    return list(
        CampaignInterest.objects.only(*INTEREST_FIELDS)
        .filter(is_public=True)
        .annotate(subscribed=Exists(subscribed))
        .order_by("position", "name")
    )


def supporter_sql(supporter_id):
    return sql.supporter_for_link(supporter_id, LINK_FIELDS)


def interests_sql(supporter_id):
    return sql.interests_with_choices(supporter_id=supporter_id)


def timed(read, ids):
    """Return (process CPU, wall) seconds per call of `read` over `ids`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for supporter_id in ids:
        read(supporter_id)
    return (
        (time.process_time() - cpu) / len(ids),
        (time.perf_counter() - wall) / len(ids),
    )


def same_rows(ids):
    for supporter_id in ids[:50]:
        (a,), (b,) = supporter_sql(supporter_id), supporter_orm(supporter_id)
        assert [getattr(a, f) for f in (*LINK_FIELDS, "suppressed")] == [
            getattr(b, f) for f in (*LINK_FIELDS, "suppressed")
        ]
        rows = [
            [(i.pk, i.subscribed) for i in read(supporter_id)]
            for read in (interests_sql, interests_orm)
        ]
        assert rows[0] == rows[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    if not Supporter.objects.exists():
        demo_seed(supporters=500)
    ids = list(Supporter.objects.values_list("pk", flat=True)[:500])
    ids = (ids * (args.calls // len(ids) + 1))[: args.calls]
    same_rows(ids)

    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, "
        f"{args.calls:,} calls a round, {args.rounds} rounds alternated"
    )
    reads = {
        "supporter": (supporter_sql, supporter_orm),
        "interests": (interests_sql, interests_orm),
    }
    for name, (raw, orm) in reads.items():
        timed(raw, ids[:200]), timed(orm, ids[:200])  # warm up
        figures = {"plain SQL": [], "ORM": []}
        for _ in range(args.rounds):
            figures["plain SQL"].append(timed(raw, ids))
            figures["ORM"].append(timed(orm, ids))
        for label, runs in figures.items():
            cpu = statistics.median(run[0] for run in runs) * 1e6
            wall = statistics.median(run[1] for run in runs) * 1e6
            print(f"{name:10} {label:9}  CPU {cpu:6.0f} µs/call   wall {wall:6.0f} µs/call")


if __name__ == "__main__":
    main()
