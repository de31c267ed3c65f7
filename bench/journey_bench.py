"""
Time the journeys' periodic step with a million supporters enrolled.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_journeys_bench \
    REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/journey_bench.py [--supporters 1000000] [--due 100000] [--runs 3]

Seeds the database once (plain SQL, later runs reuse it): the supporters, each
subscribed to one interest, and a live welcome journey (email, wait a day,
email, wait, email) with every supporter enrolled, waiting at the first wait
(far in the future). Each run makes `--due` of them due at the second email
step and times what beat's tick does with them: claim a batch
(RALLY_JOURNEY_BATCH_SIZE) by conditional UPDATE, check each is still
mailable, queue their Delivery in the sending ledger, move them to the next
wait and record their visits, batch after batch until none is due. Prints
supporters per second (target: at least 2,000) and the database's share.
Nothing is sent: the sending tasks the step queues wait in this Redis
database (no worker reads it), which the bench empties at the end.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_journeys_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm.models import CampaignInterest  # noqa: E402
from mailings.journeys import engine, services  # noqa: E402
from mailings.journeys.models import Enrolment, Journey, JourneyStep  # noqa: E402
from mailings.models import Delivery  # noqa: E402

TARGET = 2000
NAME = "Bench welcome series"

SUPPORTERS_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, status, notes, link_version, created_at, updated_at
)
SELECT 'journey' || n || '@example.org', md5('journey' || n) || md5('j' || n),
       'Reader', 'Bench', 'SW1A 1AA', 'GB', '', '', 'signup_form', 'active', '', 1,
       now() - interval '400 days', now() - interval '400 days'
FROM generate_series(1, %(count)s) AS n
"""

SUBSCRIPTIONS_SQL = """
INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, updated_at)
SELECT id, %(interest)s, 'subscribed', now() - interval '400 days', now() - interval '400 days'
FROM crm_supporter
"""

ENROLMENTS_SQL = """
INSERT INTO journeys_enrolment (
    journey_id, supporter_id, round, step_id, at_start, last_mailing_id, state, left_reason,
    due_at, entered_at, step_entered_at
)
SELECT %(journey)s, id, 1, %(step)s, false, %(mailing)s, 'active', '',
       now() + interval '3650 days', now() - interval '1 day', now() - interval '1 day'
FROM crm_supporter
"""


def seed(count):
    journey = Journey.objects.filter(name=NAME).first()
    if journey is not None:
        return journey
    print(f"Seeding {count:,} supporters and their enrolments (once)...", flush=True)
    interest, _ = CampaignInterest.objects.get_or_create(
        slug="r2p", defaults={"name": "Responsibility to Protect"}
    )
    journey = Journey.objects.create(name=NAME)
    journey.interests.set([interest])
    for position, kind in enumerate(["email", "wait", "email", "wait", "email"], start=1):
        step = JourneyStep.objects.create(
            journey=journey, position=position, kind=kind, wait_days=1 if kind == "wait" else None
        )
        if kind == "email":
            mailing = services.journey_email_create(step=step)
            mailing.subject = f"Email {position}"
            mailing.body_html = "<p>Hello</p>"
            mailing.save()
    services.journey_start(journey=journey, actor=None)
    first_email = journey.steps.get(position=1)
    waiting = journey.steps.get(position=2)
    with connection.cursor() as cursor:
        cursor.execute(SUPPORTERS_SQL, {"count": count})
        cursor.execute(SUBSCRIPTIONS_SQL, {"interest": interest.pk})
        cursor.execute(
            ENROLMENTS_SQL,
            {"journey": journey.pk, "step": waiting.pk, "mailing": first_email.mailing_id},
        )
        # The first email's deliveries, all sent, as the ledger would hold them.
        cursor.execute(
            "INSERT INTO mailings_delivery (mailing_id, supporter_id, round, status, attempts, "
            "claimed_by, esp_message_id, error, created_at, sent_at) "
            "SELECT %s, id, 1, 'sent', 1, '', '', '', now(), now() FROM crm_supporter",
            [first_email.mailing_id],
        )
        cursor.execute("ANALYZE")
    return journey


def reset(journey, due):
    """Put every enrolment back at the first wait; make `due` of them due now."""
    waiting = journey.steps.get(position=2, version=journey.version)
    second = journey.steps.get(position=3, version=journey.version)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM mailings_delivery WHERE mailing_id = %s", [second.mailing_id])
        cursor.execute(
            "DELETE FROM journeys_stepvisit WHERE step_id IN "
            "(SELECT id FROM journeys_journeystep WHERE journey_id = %s)",
            [journey.pk],
        )
        cursor.execute(
            "UPDATE journeys_enrolment SET step_id = %s, at_start = false, state = 'active', "
            "due_at = CASE WHEN id IN (SELECT id FROM journeys_enrolment WHERE journey_id = %s "
            "ORDER BY id LIMIT %s) THEN now() - interval '1 minute' "
            "ELSE now() + interval '3650 days' END WHERE journey_id = %s",
            [waiting.pk, journey.pk, due, journey.pk],
        )
        cursor.execute("VACUUM ANALYZE journeys_enrolment")
        cursor.execute("VACUUM ANALYZE mailings_delivery")


class StatementTimes:
    """Add up the database's time per kind of statement (its first words)."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split()[:3])[:48]
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started

    def top(self, count=6):
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:count]
        return "; ".join(f"{key} {seconds:.1f} s" for key, seconds in ranked)


def run(journey):
    """Advance batch after batch until none is due; return (supporters, seconds, cpu, times)."""
    moved = 0
    times = StatementTimes()
    started, cpu = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(times):
        while True:
            count = engine.journey_advance_batch(journey=journey)
            if not count:
                break
            moved += count
    return moved, time.perf_counter() - started, time.process_time() - cpu, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    journey = seed(args.supporters)
    enrolled = Enrolment.objects.filter(journey=journey).count()
    print(
        f"{enrolled:,} supporters enrolled; {args.due:,} due per run; batch "
        f"{settings.RALLY_JOURNEY_BATCH_SIZE}; load {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    rates = []
    for number in range(1, args.runs + 1):
        reset(journey, args.due)
        moved, seconds, cpu, times = run(journey)
        rate = moved / seconds
        rates.append(rate)
        queued = Delivery.objects.filter(mailing__journey_steps__journey=journey, status="queued")
        print(
            f"run {number}: {moved:,} supporters in {seconds:.1f} s = {rate:,.0f}/s "
            f"(Python {cpu:.1f} s, the rest the database); {queued.count():,} emails queued"
        )
        print(f"  slowest statements: {times.top()}")
    print(f"median {statistics.median(rates):,.0f} supporters/s (target {TARGET:,}/s)")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    Journey.objects.filter(pk=journey.pk).update(updated_at=timezone.now())


if __name__ == "__main__":
    main()
