"""
An action page under load: readers of the page, then signers, through gunicorn on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_actions \\
    REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/action_bench.py [--seconds 20] [--port 18870]
        [--web-workers 4] [--web-threads 4] [--connections 32]

Everything runs on this machine, on loopback: gunicorn (DEBUG off, gthread) on
PostgreSQL with Redis as the cache (the page's body and count are cached for
RALLY_ACTION_CACHE_SECONDS) and as Celery's broker (confirmation emails for the
signers who tick a box are queued; no worker sends them here). The bench makes
one open petition with two co-sponsors, then, for --seconds each, as fast as
--connections keep-alive connections go:

1. GET  /act/bench-petition/?source=...      the page (the public, cached view)
2. POST /act/bench-petition/                 a new signer each time, from many
   client addresses (X-Forwarded-For, one trusted proxy): 7 in 10 tick nothing,
   2 in 10 the box to hear from us, 1 in 10 a partner's box too; one in twenty
   signs a second time (counted once).

Prints requests/s, errors (anything but the page or its thank-you), p50/p99
latency for each, and checks the number of signatures counted is the number
of distinct signers. Targets: the page 1,000 requests/s, signing 500/s, no
errors. The machine's load average is printed before and after: other work may
share its cores.
"""

import argparse
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_actions")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import load_bench  # noqa: E402  (the keep-alive client and process helpers)

SLUG = "bench-petition"
PREFIX = "actbench"
ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "CONN_MAX_AGE": "600",
    "LOG_LEVEL": "WARNING",
    "RALLY_TRUSTED_PROXIES": "1",
    # The bench's signers are many people behind few addresses.
    "RALLY_ACTION_RATE_LIMIT_PER_IP": "1000000/h",
    "RALLY_RATE_LIMIT_PER_ADDRESS": "1000000/h",
    "RALLY_NOTICES_PER_HOUR": "100000000",
    "PYTHONWARNINGS": "ignore",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=18870)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    return parser.parse_args()


def prepare():
    """Migrate, make the petition afresh (no signatures) and return it."""
    for key, value in ENV.items():
        os.environ[key] = value
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from crm.models import CampaignInterest, PartnerOrganisation
    from mailings.actions.models import Action, ActionPartner

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        # Earlier runs' signers (bench data only: raw deletes are fine here).
        cursor.execute("DELETE FROM actions_signature")
        for table in ("crm_consentrecord", "crm_subscription", "crm_partnerconsent",
                      "crm_auditevent", "crm_historicalsupporter"):  # fmt: skip
            column = "id" if table == "crm_historicalsupporter" else "supporter_id"
            cursor.execute(
                f"DELETE FROM {table} WHERE {column} IN "
                f"(SELECT id FROM crm_supporter WHERE email LIKE '{PREFIX}%%')"
            )
        cursor.execute(f"DELETE FROM crm_supporter WHERE email LIKE '{PREFIX}%%'")
        # Every run starts from the same tables: no dead rows from the last one for
        # autovacuum to clear while this one is measured, and WAL flushed beforehand.
        for table in ("actions_signature", "crm_supporter", "crm_historicalsupporter"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")
    interest, _ = CampaignInterest.objects.get_or_create(
        slug="bench-r2p", defaults={"name": "Responsibility to Protect"}
    )
    action, _ = Action.objects.update_or_create(
        slug=SLUG,
        defaults={
            "title": "Protect civilians in El Fasher",
            "status": Action.Status.OPEN,
            "summary": "Tell the Foreign Secretary to act before it is too late.",
            "target": "The Foreign Secretary",
            "goal": 100_000,
            "blocks": [
                {"id": "b1", "type": "text", "html": "<p>Civilians are being killed.</p>"},
                {"id": "b2", "type": "quote", "html": "<p>Act now.</p>", "cite": "A survivor"},
            ],
        },
    )
    action.interests.set([interest])
    for slug, name in (("bench-aegis", "Aegis Trust"), ("bench-stand", "Stand UK")):
        partner, _ = PartnerOrganisation.objects.get_or_create(slug=slug, defaults={"name": name})
        ActionPartner.objects.update_or_create(
            action=action,
            partner=partner,
            defaults={
                "wording": f"Yes, {name} may email me.",
                "privacy_url": f"https://{slug}.example/privacy",
                "shared_fields": ["first_name", "last_name"],
            },
        )
    return action


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def page_request():
    source = random.choice(("", "bench-aegis", "bench-stand", "newsletter"))
    path = f"/act/{SLUG}/" + (f"?source={source}" if source else "")
    return "GET", path, {}, b"", 1


def sign_request_maker(seed):
    counter = iter(range(10**9))
    rng = random.Random(seed)

    def make():
        n = next(counter)
        # One in twenty signs again, as people do (counted once).
        who = rng.randrange(max(n, 1)) if n and rng.random() < 0.05 else n
        roll = rng.random()
        fields = {
            "email": f"{PREFIX}-{seed}-{who}@example.org",
            "first_name": f"Signer{who}",
            "last_name": "Bench",
            "postcode": "E1 6AN",
            "source": rng.choice(("", "bench-aegis", "newsletter")),
        }
        if roll > 0.7:
            fields["opt_in"] = "on"
        if roll > 0.9:
            fields["partners"] = "bench-aegis"
        body = urllib.parse.urlencode(fields).encode()
        client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        headers = {**FORM, "X-Forwarded-For": client}
        return "POST", f"/act/{SLUG}/", headers, body, 1

    return make


def run_phase(args, name, make, expect):
    queue = multiprocessing.Queue()
    start = time.monotonic() + 0.5
    stop_at = start + args.seconds
    specs = [(name, 0, make, expect)]
    process = multiprocessing.Process(
        target=load_bench._generate,
        args=(args.port, specs, args.connections, start, stop_at, queue),
    )
    process.start()
    results = queue.get()
    process.join()
    return results[name], time.monotonic() - start


def report(name, stats, elapsed):
    latency = sorted(stats["latency"])
    done = len(latency)

    def pct(p):
        return latency[min(done - 1, int(done * p))] * 1000 if done else float("nan")

    good = stats["events"]
    print(
        f"{name:<8} {done:>7,} requests  {good / elapsed:>8.1f}/s ok  "
        f"errors {stats['errors'] + stats['bad']:,} {stats.get('statuses', {})}  "
        f"p50 {pct(0.5):.1f} ms  p99 {pct(0.99):.1f} ms  max {pct(1.0):.1f} ms"
    )
    return good / elapsed


def main():
    args = parse_args()
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        raise SystemExit("Run the bench on PostgreSQL (DATABASE_URL=postgres://...).")
    action = prepare()
    env = {**os.environ, **ENV, "SITE_URL": f"http://127.0.0.1:{args.port}"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    tmp = Path(tempfile.mkdtemp(prefix="action-bench-"))
    command = (
        f"{gunicorn} project.wsgi --bind 127.0.0.1:{args.port} --workers {args.web_workers} "
        f"--worker-class gthread --threads {args.web_threads} --keep-alive 30 --log-level warning"
    )
    log = (tmp / "gunicorn.log").open("w")
    processes = {"web": load_bench.spawn(command.split(), env, log)}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        print(
            f"gunicorn gthread {args.web_workers} workers x {args.web_threads} threads, "
            f"{args.connections} connections, {args.seconds:.0f} s per phase; "
            f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        # Warm every worker (templates, connections) before measuring.
        run_phase(argparse.Namespace(**{**vars(args), "seconds": 2}), "warm", page_request, b"")
        database = os.environ["DATABASE_URL"].rsplit("/", 1)[-1]
        busy0, total0 = load_bench.machine_busy()
        cpu0 = load_bench.cpu_by_group(processes, database)
        stats, elapsed = run_phase(args, "page", page_request, b"Sign the petition")
        page_rate = report("page", stats, elapsed)
        cpu1 = load_bench.cpu_by_group(processes, database)
        busy1, total1 = load_bench.machine_busy()
        stats, elapsed = run_phase(args, "sign", sign_request_maker(os.getpid()), b"Thank you")
        sign_rate = report("sign", stats, elapsed)
        cpu2 = load_bench.cpu_by_group(processes, database)
        busy2, total2 = load_bench.machine_busy()
        # What a request costs the server, whatever else shares the machine: the
        # rate two cores of its own would carry is 2,000 ms / this.
        for name, before, after, rate in (
            ("page", cpu0, cpu1, page_rate),
            ("sign", cpu1, cpu2, sign_rate),
        ):
            served = rate * args.seconds
            web = (after["web"] - before["web"]) / served * 1000
            pg = (after["postgresql"] - before["postgresql"]) / served * 1000
            print(
                f"{name}: server CPU per request {web + pg:.2f} ms (gunicorn {web:.2f}, "
                f"PostgreSQL {pg:.2f}): about {2000 / (web + pg):,.0f}/s on two free cores"
            )
        print(
            f"machine busy: {100 * (busy1 - busy0) / (total1 - total0):.0f}% during the page "
            f"phase, {100 * (busy2 - busy1) / (total2 - total1):.0f}% while signing"
        )
    finally:
        load_bench.stop_processes(processes)
    from crm.models import Supporter
    from mailings.actions.models import Signature

    counted = Signature.objects.filter(action=action).count()
    people = Supporter.objects.filter(email__startswith=PREFIX).count()
    print(
        f"signatures counted {counted:,}, distinct signers {people:,}: "
        f"{'same' if counted == people else 'DIFFERENT'}"
    )
    print(
        f"targets: page {page_rate:,.0f}/s (1,000), signing {sign_rate:,.0f}/s (500); "
        f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
