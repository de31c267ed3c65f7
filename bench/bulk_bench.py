"""
Time the supporter admin's bulk subscribe and unsubscribe on every supporter, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_bulk \
        .venv/bin/python bench/bulk_bench.py [--supporters 20000] [--runs 3]

Migrates and seeds demo supporters once (`seed_demo`; later runs reuse them),
then, as a membership staff member in the admin, ticks "select all" on the
supporter list and subscribes everyone to a new interest, then unsubscribes
them again: the whole request, confirmation included, through Django's test
client. Prints each run's seconds and what the action did, then the median
and the worst. Target: well inside a web request's timeout (30 s) for the
whole list.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_bulk")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ["DEBUG"] = "0"  # as in production: no SQL kept in memory
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django

django.setup()

from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()  # the test client then hands back each page's messages

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from crm import roles  # noqa: E402
from crm.models import CampaignInterest, Subscription, Supporter  # noqa: E402


def staff_client():
    user, _ = get_user_model().objects.get_or_create(
        username="bulk-bench", defaults={"is_staff": True}
    )
    roles.sync_role_permissions()
    user.groups.add(Group.objects.get(name=roles.MEMBERSHIP_STAFF))
    client = Client()
    client.force_login(user)
    return client


def act(client, action, interest):
    """Tick every supporter and apply `action` with `interest`; return seconds and messages."""
    started = time.perf_counter()
    response = client.post(
        reverse("admin:crm_supporter_changelist"),
        {
            "action": action,
            "select_across": "1",
            "index": "0",
            ACTION_CHECKBOX_NAME: [Supporter.objects.values_list("pk", flat=True).first()],
            "apply": "1",
            "interest": interest.pk,
        },
        follow=True,
        secure=True,  # production settings redirect plain HTTP
    )
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{action} answered {response.status_code}")
    return seconds, [str(message) for message in response.context["messages"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database.")

    call_command("migrate", verbosity=0)
    # DEBUG is off, so the admin's pages need the collected static files' manifest.
    call_command("collectstatic", interactive=False, verbosity=0)
    if Supporter.objects.count() < args.supporters:
        call_command("seed_demo", supporters=args.supporters, verbosity=0)
    client = staff_client()
    total = Supporter.objects.count()
    print(f"{total} supporters; load average {os.getloadavg()[0]:.2f}; {args.runs} runs")

    timings = {"subscribe_action": [], "unsubscribe_action": []}
    for run in range(args.runs):
        interest = CampaignInterest.objects.create(
            slug=f"bulk-bench-{time.time_ns()}", name=f"Bulk bench {run}"
        )
        for action in timings:
            seconds, messages = act(client, action, interest)
            timings[action].append(seconds)
            print(f"run {run + 1} {action:<18} {seconds:6.2f} s  {' '.join(messages)}")
        subscribed = Subscription.objects.filter(interest=interest, status="subscribed").count()
        if subscribed:
            raise SystemExit(f"{subscribed} still subscribed after the bulk unsubscribe")
    for action, seconds in timings.items():
        print(
            f"{action:<18} median {statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s "
            f"for {total} supporters"
        )


if __name__ == "__main__":
    main()
