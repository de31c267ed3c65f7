"""
Send a newsletter to 100,000 supporters through real Celery workers, Redis and
the ESP simulator, and time it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_send_bench \\
    REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/send_bench.py [--recipients 100000] [--mode batch|individual|both]
        [--latency-ms 100] [--workers 1] [--concurrency 4] [--tasks 4] [--batch-size 1000]
        [--send-concurrency 32] [--port 18510]

For each mode it seeds the supporters once (later runs reuse them), starts
the simulator (`python -m mailsink`, its own process, 100 ms per
API call) and `celery worker` processes on the "sending" queue, presses
"send" (mailings.services.mailing_send_now), and watches the simulator.

* batch: Anymail's Mailgun backend, RALLY_BATCH_SEND=1 (one call per
  --batch-size recipients, personalised with merge_data).
* individual: Anymail's Postmark backend, one call per message,
  --send-concurrency calls in flight per sending task over kept-alive
  connections.

Prints the audience resolution time, the send rate over time, the totals,
the peak memory (VmHWM) of every worker process, the workers' CPU time per
message (steadier than the rate when the machine is shared), and checks that the
simulator received each recipient exactly once and that every Delivery row
is "sent". Target: batch under 120 s (over 800 messages/s), workers under
300 MB each.
"""

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_send_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

WORKER_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "127.0.0.1",
    "SITE_URL": "https://rally.example.org",
    "ANYMAIL_WEBHOOK_SECRET": "bench:bench",
    "LOG_LEVEL": "WARNING",
    "CONN_MAX_AGE": "600",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--mode", choices=["batch", "individual", "both"], default="both")
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="prefork children per worker")
    parser.add_argument("--tasks", type=int, default=4, help="RALLY_SEND_TASKS")
    parser.add_argument("--batch-size", type=int, default=1000, help="RALLY_SEND_BATCH_SIZE")
    parser.add_argument("--send-concurrency", type=int, default=32, help="RALLY_SEND_CONCURRENCY")
    parser.add_argument("--port", type=int, default=18510, help="simulator port")
    parser.add_argument("--timeout", type=float, default=900)
    return parser.parse_args()


def setup_django():
    import django

    for name in ("DEBUG", "SECRET_KEY"):
        os.environ.setdefault(name, WORKER_ENV[name])
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(count):
    """Create `count` supporters subscribed to an interest of their own (once)."""
    from django.db import connection, transaction

    from crm.models import CampaignInterest, Subscription, Supporter, email_hash

    have = Supporter.objects.filter(email__startswith="bench").count()
    started = time.monotonic()
    for offset in range(have, count, 10_000):
        with transaction.atomic():
            Supporter.objects.bulk_create(
                Supporter(
                    email=f"bench{n}@example.org",
                    email_hash=email_hash(f"bench{n}@example.org"),
                    first_name=f"Reader{n}" if n % 7 else "",
                    last_name="Bench",
                    postcode="SW1A 1AA",
                )
                for n in range(offset, min(count, offset + 10_000))
            )
    interest, created = CampaignInterest.objects.get_or_create(
        slug=f"bench-{count}", defaults={"name": "Atrocity prevention news"}
    )
    if created:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, "
                "updated_at) SELECT id, %s, %s, now(), now() FROM crm_supporter "
                "WHERE email LIKE 'bench%%' ORDER BY id LIMIT %s",
                [interest.pk, Subscription.Status.SUBSCRIBED, count],
            )
            # As autovacuum would have by now on a live database.
            cursor.execute("ANALYZE")
        print(f"seeded {count:,} subscribers in {time.monotonic() - started:.1f}s")
    return interest


def worker_env(args, mode, sink_url):
    env = {
        **os.environ,
        **WORKER_ENV,
        "RALLY_SEND_TASKS": str(args.tasks),
        "RALLY_SEND_BATCH_SIZE": str(args.batch_size),
        "RALLY_SEND_CONCURRENCY": str(args.send_concurrency),
        "RALLY_SEND_RATE": "0",
    }
    if mode == "batch":
        env.update(
            EMAIL_BACKEND="anymail.backends.mailgun.EmailBackend",
            ANYMAIL_MAILGUN_API_KEY="bench",
            ANYMAIL_MAILGUN_API_URL=f"{sink_url}/mailgun/v3",
            ANYMAIL_MAILGUN_SENDER_DOMAIN="rally.example.org",
            RALLY_BATCH_SEND="1",
        )
    else:
        env.update(
            EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
            ANYMAIL_POSTMARK_SERVER_TOKEN="bench",
            ANYMAIL_POSTMARK_API_URL=f"{sink_url}/postmark/",
            RALLY_BATCH_SEND="0",
        )
    return env


def group_pids(pgid):
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def peak_memory_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid):
    """Return the CPU time (user + system) process `pid` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, mode, interest):
    import redis
    from django.contrib.auth import get_user_model
    from django.db import connection

    from mailings import services
    from mailings.models import Delivery, Mailing
    from mailsink import MailSinkClient

    print(f"\n=== {mode}: {args.recipients:,} recipients, {args.latency_ms:g} ms per API call ===")
    # Earlier runs that were interrupted must not compete for the workers.
    Mailing.objects.filter(status="sending").update(status="cancelled")
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    sink_url = f"http://127.0.0.1:{args.port}"
    sink = subprocess.Popen(
        [sys.executable, "-m", "mailsink", "--port", str(args.port),
         "--latency-ms", str(args.latency_ms), "--keep-bodies", "200"],
        cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = MailSinkClient(sink_url)
    for _ in range(100):
        try:
            client.clear()
            break
        except OSError:
            time.sleep(0.1)
    env = worker_env(args, mode, sink_url)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "project",
                "worker",
                "--queues",
                "sending,celery",
                "--concurrency",
                str(args.concurrency),
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench{n}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for n in range(args.workers)
    ]
    time.sleep(6)  # let the workers start (the broker keeps tasks meanwhile anyway)

    # A realistic newsletter: the demo "duty to prevent" one, written in blocks.
    from mailings.demo import BANNER, DUTY_TO_PREVENT, demo_blocks

    mailing = Mailing.objects.create(
        name=f"Bench {mode}",
        subject='{{ first_name|default:"Friend" }}, the UK\'s duty to prevent atrocities',
        preheader="Why prevention comes first, and what the UK has promised.",
        blocks=demo_blocks(DUTY_TO_PREVENT, f"/newsletters/images/{BANNER}"),
    )
    mailing.interests.set([interest])
    staff, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    # CPU time, unlike the rate, hardly moves when other work shares the machine.
    cpu_before = {pid: cpu_seconds(pid) for w in workers for pid in group_pids(w.pid)}
    started = time.monotonic()
    services.mailing_send_now(mailing=mailing, actor=staff)
    samples = []
    memory = {}
    last_print = started
    try:
        while True:
            time.sleep(0.5)
            count = client.count()
            now = time.monotonic()
            samples.append((now - started, count))
            for worker in workers:
                for pid in group_pids(worker.pid):
                    memory[pid] = max(memory.get(pid, 0), peak_memory_mb(pid))
            if now - last_print >= 5:
                window = [s for s in samples if s[0] >= now - started - 5]
                rate = (window[-1][1] - window[0][1]) / max(0.5, window[-1][0] - window[0][0])
                print(f"  t={now - started:6.1f}s  accepted {count:>7,}  {rate:8.0f} msg/s")
                last_print = now
            if count >= args.recipients:
                accepted_at = now - started
                break
            if now - started > args.timeout:
                raise SystemExit(f"timed out with {count:,} accepted")
        deadline = time.monotonic() + 60
        while not Mailing.objects.filter(pk=mailing.pk, status="sent").exists():
            if time.monotonic() > deadline:
                raise SystemExit("the mailing did not finish")
            time.sleep(0.2)
        finished_at = time.monotonic() - started
        worker_cpu = 0.0
        for worker in workers:
            for pid in group_pids(worker.pid):
                memory[pid] = max(memory.get(pid, 0), peak_memory_mb(pid))
                worker_cpu += cpu_seconds(pid) - cpu_before.get(pid, 0.0)
        received = Counter(client.recipients())
    finally:
        for process in [*workers, sink]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*workers, sink]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    mailing.refresh_from_db()
    print(f"  audience resolved into {mailing.recipient_count:,} deliveries "
          f"in {mailing.audience_seconds:.2f}s")  # fmt: skip
    print(f"  all {args.recipients:,} accepted by the simulator after {accepted_at:.1f}s "
          f"({args.recipients / accepted_at:,.0f} msg/s); mailing marked sent after "
          f"{finished_at:.1f}s")  # fmt: skip
    statuses = Counter(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))
    print(f"  deliveries: {dict(statuses)}")
    peak = max(memory.values()) if memory else 0
    print(f"  peak memory per worker process: {peak:.0f} MB (over {len(memory)} processes)")
    cpu_ms = 1000 * worker_cpu / args.recipients
    print(f"  worker CPU: {worker_cpu:.1f}s in all, {cpu_ms:.2f} ms per message")
    expected = set(
        Delivery.objects.filter(mailing=mailing).values_list("supporter__email", flat=True)
    )
    twice = sum(1 for n in received.values() if n > 1)
    missed = len(expected - set(received))
    extra = len(set(received) - expected)
    exactly_once = (
        twice == 0 and missed == 0 and extra == 0 and statuses == {"sent": args.recipients}
    )
    print(f"  simulator: {sum(received.values()):,} messages to {len(received):,} addresses; "
          f"{twice} received twice, {missed} missed, {extra} unexpected")  # fmt: skip
    connection.close()
    return {
        "mode": mode,
        "accepted_at": accepted_at,
        "finished_at": finished_at,
        "rate": args.recipients / accepted_at,
        "peak_mb": peak,
        "cpu_ms": cpu_ms,
        "exactly_once": exactly_once,
    }


def main():
    args = parse_args()
    setup_django()
    interest = seed(args.recipients)
    modes = ["batch", "individual"] if args.mode == "both" else [args.mode]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results = [run(args, mode, interest) for mode in modes]
    print("\nsummary")
    for r in results:
        verdict = "exactly once" if r["exactly_once"] else "NOT EXACTLY ONCE"
        print(f"  {r['mode']:<10} {r['accepted_at']:6.1f}s  {r['rate']:7,.0f} msg/s  "
              f"peak {r['peak_mb']:.0f} MB/worker  CPU {r['cpu_ms']:.2f} ms/msg  "
              f"{verdict}")  # fmt: skip
    if not all(r["exactly_once"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
