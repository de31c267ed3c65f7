"""
Time what A/B tests and the deliverability guard add to sending a newsletter to
100,000 supporters, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_ab_bench \\
        .venv/bin/python bench/abtest_bench.py [--recipients 100000] [--repeat 5]

Seeds the supporters once (later runs reuse them) and prints, as medians of
--repeat runs:

* resolving the audience into deliveries (mailings.services.mailing_start) for
  a plain newsletter and for one testing four variants on 20%: the difference
  is the assignment (a hash per recipient, one UPDATE per 2,000 rows);
* one deliverability guard check (mailings.guard.figures: one COUNT over the
  mailing's deliveries), which each sending task makes at most every
  RALLY_GUARD_CHECK_SECONDS;
* the report's A/B figures (mailings.abtests.verdict, with the Bayesian chance
  of being best integrated on a 4,001-point grid).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_ab_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DEBUG", "1")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    return parser.parse_args()


def seed(count):
    from crm.models import CampaignInterest, Subscription, Supporter, email_hash

    interest, _ = CampaignInterest.objects.get_or_create(
        slug="ab-bench", defaults={"name": "A/B bench"}
    )
    have = Subscription.objects.filter(interest=interest).count()
    if have >= count:
        return interest
    batch = 10_000
    for start in range(have, count, batch):
        people = Supporter.objects.bulk_create(
            Supporter(
                email=f"ab{n}@bench.example.org",
                email_hash=email_hash(f"ab{n}@bench.example.org"),
                first_name=f"Reader{n}",
            )
            for n in range(start, min(count, start + batch))
        )
        Subscription.objects.bulk_create(
            Subscription(supporter=s, interest=interest, status=Subscription.Status.SUBSCRIBED)
            for s in people
        )
    return interest


def newsletter(interest, *, variants):
    from mailings.models import ABTest, Mailing, Variant

    mailing = Mailing.objects.create(
        name="A/B bench",
        subject="Bench",
        status=Mailing.Status.SENDING,
        blocks=[{"id": "b1", "type": "text", "html": "<p>Hello</p>"}],
    )
    mailing.interests.set([interest])
    if variants:
        ABTest.objects.create(mailing=mailing, test_percent=20)
        for position in range(variants):
            Variant.objects.create(
                mailing=mailing, position=position, subject=f"Subject {position}"
            )
    return mailing


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main():
    args = parse_args()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from mailings import abtests, guard, sending, services
    from mailings.models import Delivery, Mailing

    call_command("migrate", verbosity=0)
    # Only the resolution is timed: no sending tasks are queued.
    sending.mailing_enqueue_senders = lambda *, mailing: None
    started = time.perf_counter()
    interest = seed(args.recipients)
    print(f"supporters ready in {time.perf_counter() - started:.1f}s ({connection.vendor})")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    plain, tested, checks, verdicts = [], [], [], []
    for _ in range(args.repeat):
        for variants, into in ((0, plain), (4, tested)):
            mailing = newsletter(interest, variants=variants)
            seconds, count = timed(lambda m=mailing: services.mailing_start(mailing_id=m.pk))
            assert count == args.recipients, count
            into.append(seconds)
            if variants:
                test_rows = Delivery.objects.filter(mailing=mailing, in_ab_test=True)
                test_rows.update(status=Delivery.Status.SENT)
                Delivery.objects.filter(mailing=mailing, status="held").update(status="sent")
                checks.append(timed(lambda m=mailing: guard.figures(m.pk))[0])
                verdicts.append(timed(lambda m=mailing: abtests.verdict(m))[0])
            with connection.cursor() as cursor:  # 100,000 rows: not one by one
                cursor.execute(
                    f"DELETE FROM {Delivery._meta.db_table} WHERE mailing_id = %s", [mailing.pk]
                )
            Mailing.objects.filter(pk=mailing.pk).delete()

    def ms(values):
        return f"median {1000 * statistics.median(values):.0f} ms (min {1000 * min(values):.0f})"

    print(f"resolve the audience, plain newsletter:   {ms(plain)}")
    print(f"resolve and assign four variants on 20%:  {ms(tested)}")
    print(f"one guard check (COUNT over deliveries):  {ms(checks)}")
    print(f"the report's A/B verdict:                 {ms(verdicts)}")


if __name__ == "__main__":
    main()
