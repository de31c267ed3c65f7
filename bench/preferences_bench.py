"""
Load the supporter pages under gunicorn on PostgreSQL, on loopback.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_self \
        .venv/bin/python bench/preferences_bench.py [--supporters 20000] [--seconds 20]
        [--port 18710] [--workers 2] [--threads 2] [--connections 32] [--clients 1]

Seeds supporters (plain SQL; later runs reuse them), starts gunicorn with
DEBUG off, then drives three phases with an asyncio HTTP/1.1 load generator
using keep-alive connections:

1. GET /preferences/<token>/ for random supporters (the preference centre);
2. POST /unsubscribe/<token>/ with body List-Unsubscribe=One-Click (RFC 8058),
   each supporter once, for a newsletter sent for two interests: every POST
   really unsubscribes (two Subscription updates, two ConsentRecords, two audit
   events, one statement);
3. POSTs for supporters who already left, as mailbox providers retry: the
   idempotent no-op.

Each phase visits its supporters in a fresh random order, each once before any
twice; phase 2 needs more supporters than it makes requests, or it turns into
phase 3.

Prints, per phase: requests, requests/s, non-200 answers and errors, and
p50/p90/p99 latency. Target: 500 requests/s or more per phase, no errors.
The load generator shares the machine with gunicorn, so its CPU counts
against the figure; the machine's load before the run, a CPU check (the
machine's speed varies) and the Python build are printed too.
"""

import argparse
import asyncio
import itertools
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_self")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

SERVER_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "CONN_MAX_AGE": "600",
    "LOG_LEVEL": "WARNING",
}

SEED_SQL = """
INSERT INTO crm_supporter (
    email, email_hash, first_name, last_name, postcode, country, phone, organisation,
    source, partner_id, status, notes, link_version, created_at, updated_at
)
SELECT
    'prefbench' || n || '@example.org', md5('prefbench' || n) || md5('p' || n),
    'Reader', 'Number ' || n, 'SW1A 1AA', 'GB', '', '', 'signup_form', NULL, 'active', '',
    1, now(), now()
FROM generate_series(1, %s) AS n
"""

REPEATS = 2000

SUBSCRIBE_SQL = """
INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, updated_at)
SELECT s.id, i.id, 'subscribed', now(), now()
FROM crm_supporter s CROSS JOIN crm_campaigninterest i
WHERE s.email LIKE 'prefbench%%' AND i.slug IN ('bench-r2p', 'bench-un', 'bench-events')
ON CONFLICT DO NOTHING
"""


def prepare(count):
    """Migrate, seed `count` supporters once, reset them, return (GET paths, POST paths)."""
    for key, value in SERVER_ENV.items():
        os.environ.setdefault(key, value)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from crm.models import CampaignInterest, ConsentRecord, Supporter
    from mailings import tokens
    from mailings.models import Mailing

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    interests = [
        CampaignInterest.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": f"About {name}.", "position": n}
        )[0]
        for n, (slug, name) in enumerate(
            [
                ("bench-r2p", "Responsibility to Protect"),
                ("bench-un", "UK at the UN Security Council"),
                ("bench-events", "Events and actions"),
            ]
        )
    ]
    existing = Supporter.objects.filter(email__startswith="prefbench").count()
    with connection.cursor() as cursor:
        if existing < count:
            cursor.execute(
                "DELETE FROM crm_subscription WHERE supporter_id IN "
                "(SELECT id FROM crm_supporter WHERE email LIKE 'prefbench%%')"
            )
            ConsentRecord.objects.filter(supporter__email__startswith="prefbench")._erase()
            cursor.execute(
                "DELETE FROM crm_auditevent WHERE supporter_id IN "
                "(SELECT id FROM crm_supporter WHERE email LIKE 'prefbench%%')"
            )
            cursor.execute("DELETE FROM crm_supporter WHERE email LIKE 'prefbench%%'")
            cursor.execute(SEED_SQL, [count])
        # Every run starts with everyone subscribed, so each first POST writes.
        cursor.execute(
            "UPDATE crm_subscription SET status = 'subscribed' WHERE supporter_id IN "
            "(SELECT id FROM crm_supporter WHERE email LIKE 'prefbench%%')"
        )
        cursor.execute(SUBSCRIBE_SQL)
        # The first REPEATS supporters have already left: phase 3's retries.
        cursor.execute(
            "UPDATE crm_subscription SET status = 'unsubscribed' WHERE supporter_id IN "
            "(SELECT id FROM crm_supporter WHERE email LIKE 'prefbench%%' ORDER BY id LIMIT %s)",
            [REPEATS],
        )
        cursor.execute("ANALYZE")
    mailing, _ = Mailing.objects.get_or_create(
        name="Preferences bench newsletter", defaults={"subject": "Bench"}
    )
    mailing.interests.set(interests[:2])
    supporters = list(Supporter.objects.filter(email__startswith="prefbench").order_by("pk"))
    gets = [f"/preferences/{tokens.make_preferences_token(s)}/" for s in supporters]
    posts = [f"/unsubscribe/{tokens.make_unsubscribe_token(s, mailing)}/" for s in supporters]
    connection.close()
    return gets, posts


def start_server(port, workers, threads, worker_class="gthread"):
    env = {**os.environ, **SERVER_ENV, "SITE_URL": f"http://127.0.0.1:{port}"}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "project.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise SystemExit("gunicorn did not answer /healthz within 30 s")


def stop_server(server):
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


# CPU accounting: the machine is shared, so besides requests/s print the CPU
# time the server (gunicorn workers and their PostgreSQL backends) spent per
# request, which other load does not change, and the rate two idle cores
# would give at that cost.

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def server_cpu(server_pid, database):
    """Return {pid: (CPU seconds so far, "app" or "db")} for gunicorn and PostgreSQL."""
    backends = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-At",
            "-c",
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    used = {pid: (_cpu_seconds(pid), "app") for pid in [server_pid, *_children(server_pid)]}
    used.update({int(pid): (_cpu_seconds(int(pid)), "db") for pid in backends})
    return used


# The load generator -------------------------------------------------------------


async def _connection(port, method, paths, stop_at, stats, check):
    body = b"List-Unsubscribe=One-Click"
    reader = writer = None
    while time.monotonic() < stop_at:
        path = next(paths)
        if method == "POST":
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        else:
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            content = await reader.readexactly(length)
            stats["latency"].append(time.perf_counter() - started)
            if status != 200 or check not in content:
                stats["bad"] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            stats["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _generate(port, method, paths, seconds, connections, check, queue):
    stats = {"latency": [], "bad": 0, "errors": 0}
    stop_at = time.monotonic() + seconds
    # Each path once, in random order (then again, if the phase outlasts them).
    random.shuffle(paths)
    paths = itertools.cycle(paths)

    async def main():
        await asyncio.gather(
            *(_connection(port, method, paths, stop_at, stats, check) for _ in range(connections))
        )

    asyncio.run(main())
    queue.put(stats)


def run_phase(name, port, method, paths, seconds, connections, clients, check, server=None):
    queue = multiprocessing.Queue()
    cpu_before = server_cpu(*server) if server else {}
    per_client = max(1, connections // clients)
    processes = [
        multiprocessing.Process(
            target=_generate,
            args=(port, method, paths[n::clients], seconds, per_client, check, queue),
        )
        for n in range(clients)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    cpu_after = server_cpu(*server) if server else {}
    spent = {"app": 0.0, "db": 0.0}
    for pid, (after, kind) in cpu_after.items():
        spent[kind] += after - cpu_before.get(pid, (0.0, kind))[0]
    cpu = spent["app"] + spent["db"]
    latency = sorted(x for r in results for x in r["latency"])
    bad = sum(r["bad"] for r in results)
    errors = sum(r["errors"] for r in results)
    rate = len(latency) / elapsed

    def pct(p):
        return latency[min(len(latency) - 1, int(p * len(latency)))] * 1000 if latency else 0

    print(
        f"{name:<28} {len(latency):>6} requests {rate:>5.0f} req/s  "
        f"non-200 {bad} errors {errors}  "
        f"p50 {pct(0.50):.0f} ms p90 {pct(0.90):.0f} ms p99 {pct(0.99):.0f} ms"
        + (
            f"\n{'':<28} server CPU per request: {cpu / len(latency) * 1000:.2f} ms "
            f"(app {spent['app'] / len(latency) * 1000:.2f} + PostgreSQL "
            f"{spent['db'] / len(latency) * 1000:.2f}), i.e. {len(latency) / cpu * 2:.0f} req/s "
            f"if two idle cores served only this"
            if server and latency and cpu
            else ""
        )
    )
    return rate, bad + errors


def server_python():
    """Return the version and home of the Python gunicorn runs on (the one running this)."""
    script = "import platform, sys; print(platform.python_version(), 'from', sys.base_prefix)"
    return "Python " + subprocess.check_output([sys.executable, "-c", script], text=True).strip()


def cpu_check():
    """Return the seconds a fixed pure-Python loop takes: how fast this CPU is right now.

    Shared and virtual machines change speed from hour to hour; the figure
    lets runs made at different times be compared.
    """
    started = time.perf_counter()
    total = 0
    for n in range(3_000_000):
        total += n * n
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supporters", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=18710)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    args = parser.parse_args()

    if not os.environ["DATABASE_URL"].startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database: the target is for PostgreSQL.")
    gets, posts = prepare(args.supporters)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run, "
        f"CPU check {cpu_check():.2f} s (a fixed Python loop; lower is faster); "
        f"gunicorn on {server_python()}; "
        f"{args.supporters} supporters; gunicorn {args.worker_class} {args.workers} workers x "
        f"{args.threads} threads; {args.connections} keep-alive connections from "
        f"{args.clients} generator process(es); {args.seconds:.0f} s per phase"
    )
    server = start_server(args.port, args.workers, args.threads, args.worker_class)
    try:
        # Warm every worker's connection and template caches.
        run_phase("warm-up", args.port, "GET", gets[:50], 2, 8, 1, b"")
        database = os.environ["DATABASE_URL"].rsplit("/", 1)[-1]
        measured = (server.pid, database)
        results = [
            run_phase(
                "GET  preference centre",
                args.port,
                "GET",
                gets,
                args.seconds,
                args.connections,
                args.clients,
                b"Your email choices",
                measured,
            ),
            run_phase(
                "POST one-click, first time",
                args.port,
                "POST",
                posts[REPEATS:],
                args.seconds,
                args.connections,
                args.clients,
                b"unsubscribed",
                measured,
            ),
            run_phase(
                "POST one-click, repeated",
                args.port,
                "POST",
                posts[:REPEATS],
                args.seconds,
                args.connections,
                args.clients,
                b"unsubscribed",
                measured,
            ),
        ]
    finally:
        stop_server(server)
    print(f"load average after the run {os.getloadavg()[0]:.2f}")
    ok = all(rate >= 500 and failures == 0 for rate, failures in results)
    print("target (>= 500 req/s, no errors):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    sys.exit(main())
