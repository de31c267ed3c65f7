"""
Load the public endpoints together, while a newsletter is being sent.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rally_load \\
    REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/load_bench.py [--seconds 30] [--recipients 20000]
        [--port 18800] [--sink-port 18801] [--web-workers 4] [--web-threads 4]
        [--send-mode batch|individual] [--send-rate 0]
        [--preferences 100] [--unsubscribe 40] [--join 10]
        [--postmark 60] [--mailgun 40] [--sendgrid 10] [--sendgrid-batch 100]

Everything runs on this machine, on loopback: gunicorn (DEBUG off) on
PostgreSQL, Redis as broker and cache, real Celery workers (a sender on the
"sending" queue, a "webhooks" worker applying tracking events, a default
worker sending sign-up confirmations), Celery beat, and the ESP simulator
(`python -m mailsink`, 100 ms per API call) in its own process.

The script seeds --recipients supporters (once), resets them, records an
earlier newsletter as sent to all of them (the deliveries tracking events
refer to), presses "send" on a new newsletter to all of them, and while it
goes out drives, each at a fixed offered rate (requests per second; 0 means
as fast as its connections go) over keep-alive connections:

* GET  /preferences/<token>/               the preference centre
* POST /unsubscribe/<token>/               RFC 8058 one-click, each supporter once
* POST /join/                              sign-up, from many client addresses
* POST /anymail/postmark/tracking/         one event per request
* POST /anymail/mailgun/tracking/          one signed event per request
* POST /anymail/sendgrid/tracking/         --sendgrid-batch events per request

Tracking events are delivered, deferred, opened, clicked, hard and soft
bounces, complaints and ESP unsubscribes, in random order with timestamps out
of order, and one request in ten is sent twice (ESPs retry). Latency is
measured from when a request was due, so a server that falls behind is not
flattered by a generator that waits for it.

Prints, per endpoint: requests, requests/s (and events/s for webhooks),
errors (anything but the expected 200 page), p50/p99/max latency; the send's
progress during the window; how long the webhooks worker took to apply every
recorded event; and checks that every bounce and complaint produced exactly
one suppression. Targets: no errors; webhook ingestion 1,000 events/s or
more; p99 under 200 ms for the supporter pages. The machine's load is printed
before and after: other work may share its cores.
"""

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from queue import Empty

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rally_load")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

WEBHOOK_SECRET = "bench:webhook-secret"
MAILGUN_KEY = "bench-mailgun-signing-key"
ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "CONN_MAX_AGE": "600",
    "LOG_LEVEL": "WARNING",
    "ANYMAIL_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    "ANYMAIL_MAILGUN_API_KEY": "bench",
    "ANYMAIL_MAILGUN_SENDER_DOMAIN": "rally.example.org",
    "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench",
    "RALLY_WEBHOOK_ESPS": "postmark,mailgun,sendgrid",
    # Behind one proxy: sign-ups come from many addresses (X-Forwarded-For).
    "RALLY_TRUSTED_PROXIES": "1",
    "PYTHONWARNINGS": "ignore",
}
PREFIX = "loadbench"
INTEREST = "load-r2p"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=18800)
    parser.add_argument("--sink-port", type=int, default=18801)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--webhook-workers", type=int, default=2, help="concurrency")
    parser.add_argument("--send-mode", choices=["batch", "individual"], default="batch")
    parser.add_argument(
        "--send-rate",
        type=float,
        default=0,
        help="messages/s (RALLY_SEND_RATE); 0: spread the send over the window",
    )
    parser.add_argument("--no-send", action="store_true", help="no newsletter during the load")
    parser.add_argument("--latency-ms", type=float, default=100, help="ESP simulator")
    parser.add_argument(
        "--nice", type=int, default=10, help="niceness of the workers and the simulator (0: none)"
    )
    for name, rate in [
        ("preferences", 40),
        ("unsubscribe", 10),
        ("join", 3),
        ("postmark", 30),
        ("mailgun", 20),
        ("sendgrid", 10),
    ]:
        parser.add_argument(
            f"--{name}",
            type=float,
            default=rate,
            help="requests/s (0: as fast as it goes; -1: off)",
        )
    parser.add_argument("--sendgrid-batch", type=int, default=100, help="events per request")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="most connections per endpoint (with rate 0: exactly this many, each in a loop)",
    )
    return parser.parse_args()


# -- data ------------------------------------------------------------------------------------


def prepare(args):
    """Migrate, seed the supporters once and reset them; return what the load needs."""
    for key, value in ENV.items():
        os.environ[key] = value
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from crm.models import CampaignInterest, Supporter, email_hash
    from mailings import tokens
    from mailings.models import Delivery, Mailing

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    interest, _ = CampaignInterest.objects.get_or_create(
        slug=INTEREST,
        defaults={"name": "Responsibility to Protect", "description": "The R2P campaign."},
    )
    have = Supporter.objects.filter(email__startswith=PREFIX).count()
    started = time.monotonic()
    for offset in range(have, args.recipients, 10_000):
        with transaction.atomic():
            Supporter.objects.bulk_create(
                Supporter(
                    email=f"{PREFIX}{n}@example.org",
                    email_hash=email_hash(f"{PREFIX}{n}@example.org"),
                    first_name=f"Reader{n}",
                    last_name="Load",
                    postcode="SW1A 1AA",
                )
                for n in range(offset, min(args.recipients, offset + 10_000))
            )
    if have < args.recipients:
        print(f"seeded {args.recipients - have:,} supporters in {time.monotonic() - started:.1f}s")
    Mailing.objects.filter(status__in=["sending", "paused", "scheduled"]).update(status="cancelled")
    with connection.cursor() as cursor:
        ours = f"SELECT id FROM crm_supporter WHERE email LIKE '{PREFIX}%%'"
        # Everyone starts subscribed, active and off the suppression list.
        cursor.execute(f"UPDATE crm_supporter SET status = 'active' WHERE id IN ({ours})")
        cursor.execute(
            f"DELETE FROM crm_suppression WHERE email_hash IN "
            f"(SELECT email_hash FROM crm_supporter WHERE id IN ({ours}))"
        )
        cursor.execute(
            "INSERT INTO crm_subscription (supporter_id, interest_id, status, subscribed_at, "
            f"updated_at) SELECT id, %s, 'subscribed', now(), now() FROM ({ours}) s "
            "ON CONFLICT (supporter_id, interest_id) DO UPDATE SET status = 'subscribed'",
            [interest.pk],
        )
        # Sign-ups of earlier runs.
        cursor.execute(
            "DELETE FROM crm_supporter WHERE email LIKE 'joiner%%' AND NOT EXISTS "
            "(SELECT 1 FROM mailings_delivery d WHERE d.supporter_id = crm_supporter.id)"
        )
    earlier = Mailing.objects.create(
        name="Load bench: last week's newsletter", subject="Last week", status="sent"
    )
    earlier.interests.set([interest])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailings_delivery (mailing_id, supporter_id, status, attempts, "
            "claimed_by, esp_message_id, error, sent_at, created_at) "
            # Message ids unique to this run: an earlier run's events must not
            # name this run's deliveries.
            "SELECT %s, id, 'sent', 1, '', 'bench-' || %s || '-' || id, '', now(), now() "
            f"FROM ({ours}) s",
            [earlier.pk, earlier.pk],
        )
        cursor.execute("ANALYZE")
    deliveries = list(
        Delivery.objects.filter(mailing=earlier).values_list("pk", "supporter_id", "esp_message_id")
    )
    supporters = {s.pk: s for s in Supporter.objects.filter(email__startswith=PREFIX)}
    pages = [f"/preferences/{tokens.make_preferences_token(s)}/" for s in supporters.values()]
    unsubscribes = [
        f"/unsubscribe/{tokens.make_unsubscribe_token(s, earlier)}/" for s in supporters.values()
    ]
    emails = {pk: s.email for pk, s in supporters.items()}
    connection.close()
    return {
        "interest": interest,
        "earlier": earlier,
        "deliveries": [(pk, earlier.pk, emails[sid], msg) for pk, sid, msg in deliveries],
        "pages": pages,
        "unsubscribes": unsubscribes,
    }


# -- processes ---------------------------------------------------------------------------------


def server_env(args):
    env = {**os.environ, **ENV, "SITE_URL": f"http://127.0.0.1:{args.port}"}
    sink = f"http://127.0.0.1:{args.sink_port}"
    env["ANYMAIL_MAILGUN_API_URL"] = f"{sink}/mailgun/v3"
    env["ANYMAIL_POSTMARK_API_URL"] = f"{sink}/postmark/"
    if args.send_mode == "batch":
        env.update(
            EMAIL_BACKEND="anymail.backends.mailgun.EmailBackend",
            RALLY_BATCH_SEND="1",
            RALLY_SEND_BATCH_SIZE="1000",
        )
    else:
        env.update(
            EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
            RALLY_BATCH_SEND="0",
            RALLY_SEND_CONCURRENCY="16",
        )
    rate = args.send_rate or args.recipients / args.seconds
    env.update(RALLY_SEND_RATE=str(rate), RALLY_SEND_TASKS="2")
    # The sign-up limits are per client address; the bench's clients are many.
    env.update(RALLY_RATE_LIMIT_PER_IP="30/h", RALLY_RATE_LIMIT_PER_ADDRESS="5/h")
    return env


def spawn(command, env, log):
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_processes(args, tmp):
    env = server_env(args)
    python, gunicorn = sys.executable, Path(sys.executable).parent / "gunicorn"
    # Background work yields the CPU to web requests (docs/deploy.md, "Sizing"); the
    # simulator stands for an ESP on another continent, so it yields too.
    nice = f"nice -n {args.nice}" if args.nice else ""
    celery = f"{nice} {python} -m celery --app project"
    quiet = "--loglevel WARNING --without-gossip --without-mingle"
    commands = {
        "sink": f"{nice} {python} -m mailsink --port {args.sink_port} "
        f"--latency-ms {args.latency_ms} --keep-bodies 100",
        "web": f"{gunicorn} project.wsgi --bind 127.0.0.1:{args.port} "
        f"--workers {args.web_workers} --worker-class gthread --threads {args.web_threads} "
        "--keep-alive 30 --log-level warning",
        "sender": f"{celery} worker --queues sending --concurrency 2 --hostname sender@%h {quiet}",
        "webhooks": f"{celery} worker --queues webhooks --concurrency {args.webhook_workers} "
        f"--hostname webhooks@%h {quiet}",
        "worker": f"{celery} worker --queues celery --concurrency 1 --hostname default@%h {quiet}",
        "beat": f"{celery} beat --loglevel WARNING --schedule {tmp / 'beat'}",
    }
    log = (tmp / "processes.log").open("w")
    processes = {name: spawn(command.split(), env, log) for name, command in commands.items()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{args.port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return processes
        except OSError:
            time.sleep(0.3)
    stop_processes(processes)
    raise SystemExit(f"gunicorn did not answer /healthz within 60 s; see {tmp}/processes.log")


def stop_processes(processes):
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# -- requests ---------------------------------------------------------------------------------

AUTH = "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()
JSON = {"Content-Type": "application/json", "Authorization": AUTH}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# What each kind of tracking event is, per ESP: weights of a realistic mix.
# A newsletter's events: about 2.5 per message (queued, delivered, an open for
# four in ten, a click for one in fifteen), hard bounces 1% of messages and
# complaints 0.1%, a little worse than a healthy list.
KINDS = [
    ("queued", 12),
    ("delivered", 45),
    ("opened", 28),
    ("clicked", 7.7),
    ("deferred", 4),
    ("soft_bounce", 2),
    ("bounced", 1),
    ("complained", 0.1),
    ("unsubscribed", 0.2),
]
POSTMARK_KIND = {
    "delivered": ("Delivery", {}),
    "opened": ("Open", {}),
    "clicked": ("Click", {"OriginalLink": "https://example.org/strategy"}),
    "deferred": ("Bounce", {"Type": "Transient", "TypeCode": 2}),
    "bounced": ("Bounce", {"Type": "HardBounce", "TypeCode": 1}),
    "soft_bounce": ("Bounce", {"Type": "SoftBounce", "TypeCode": 4096}),
    "complained": ("SpamComplaint", {"Type": "SpamComplaint", "TypeCode": 512}),
    "unsubscribed": (
        "SubscriptionChange",
        {"SuppressSending": True, "SuppressionReason": "ManualSuppression"},
    ),
    "queued": ("Delivery", {}),
}
MAILGUN_KIND = {
    "delivered": {"event": "delivered"},
    "opened": {"event": "opened"},
    "clicked": {"event": "clicked", "url": "https://example.org/strategy"},
    "deferred": {"event": "failed", "severity": "temporary", "reason": "generic"},
    "bounced": {"event": "failed", "severity": "permanent", "reason": "bounce"},
    "soft_bounce": {"event": "failed", "severity": "temporary", "reason": "generic"},
    "complained": {"event": "complained"},
    "unsubscribed": {"event": "unsubscribed"},
    "queued": {"event": "accepted"},
}
SENDGRID_KIND = {
    "delivered": {"event": "delivered", "response": "250 OK"},
    "opened": {"event": "open"},
    "clicked": {"event": "click", "url": "https://example.org/strategy"},
    "deferred": {"event": "deferred", "response": "400 try again later", "attempt": "1"},
    "bounced": {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user"},
    "soft_bounce": {"event": "bounce", "type": "blocked", "reason": "421 blocked"},
    "complained": {"event": "spamreport"},
    "unsubscribed": {"event": "unsubscribe"},
    "queued": {"event": "processed"},
}


class Events:
    """Random tracking events about the earlier newsletter's deliveries."""

    def __init__(self, deliveries, seed):
        self.deliveries = deliveries
        self.random = random.Random(seed)
        kinds, weights = zip(*KINDS, strict=True)
        self.kinds, self.weights = kinds, weights
        self.base = time.time() - 3600

    def pick(self):
        delivery = self.random.choice(self.deliveries)
        kind = self.random.choices(self.kinds, self.weights)[0]
        # Within the last hour, in any order.
        moment = self.base + self.random.uniform(0, 3600)
        return delivery, kind, moment

    def postmark(self):
        (pk, mailing, email, message_id), kind, moment = self.pick()
        record_type, extra = POSTMARK_KIND[kind]
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
            + f".{int(moment % 1 * 1e6):06d}Z"
        )
        payload = {
            "RecordType": record_type,
            "MessageStream": "broadcast",
            "MessageID": message_id,
            "Recipient": email,
            "Email": email,
            "Tag": "newsletter",
            "Metadata": {"mailing_id": str(mailing), "delivery_id": str(pk)},
            "DeliveredAt": stamp,
            "BouncedAt": stamp,
            "ReceivedAt": stamp,
            "ChangedAt": stamp,
            **extra,
        }
        if record_type in ("Bounce", "SpamComplaint"):
            payload["ID"] = self.random.getrandbits(62)
        return json.dumps(payload).encode(), 1

    def mailgun(self):
        (pk, mailing, email, message_id), kind, moment = self.pick()
        token = uuid.uuid4().hex
        timestamp = str(int(time.time()))
        signature = hmac.new(
            MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
        ).hexdigest()
        event = {
            "id": uuid.uuid4().hex[:22],
            "timestamp": moment,
            "recipient": email,
            "user-variables": {"mailing_id": str(mailing), "delivery_id": str(pk)},
            "message": {"headers": {"message-id": message_id}},
            "tags": ["newsletter"],
            **MAILGUN_KIND[kind],
        }
        payload = {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
        return json.dumps(payload).encode(), 1

    def sendgrid(self, size):
        batch = []
        for _ in range(size):
            (pk, mailing, email, message_id), kind, moment = self.pick()
            batch.append(
                {
                    "email": email,
                    "timestamp": int(moment),
                    "sg_event_id": uuid.uuid4().hex,
                    "sg_message_id": f"{message_id}.filter0001",
                    "smtp-id": f"<{message_id}@rally.example.org>",
                    "category": ["newsletter"],
                    "mailing_id": str(mailing),
                    "delivery_id": str(pk),
                    **SENDGRID_KIND[kind],
                }
            )
        return json.dumps(batch).encode(), size


def endpoints(args, data):
    """Return (name, rate, connections, make_request, expected text) for each endpoint."""
    pages = list(data["pages"])
    random.Random(1).shuffle(pages)
    page_cycle = itertools.cycle(pages)
    unsubscribes = list(data["unsubscribes"])
    random.Random(2).shuffle(unsubscribes)
    unsubscribe_cycle = itertools.cycle(unsubscribes)
    joiners = itertools.count()
    run = uuid.uuid4().hex[:8]
    events = Events(data["deliveries"], seed=3)
    one_click = b"List-Unsubscribe=One-Click"

    def preferences():
        return "GET", next(page_cycle), {}, b"", 1

    def unsubscribe():
        return "POST", next(unsubscribe_cycle), FORM, one_click, 1

    def join():
        n = next(joiners)
        body = (
            f"email=joiner{run}x{n}%40example.org&first_name=Jo&last_name=Joiner"
            f"&postcode=SW1A+1AA&interests={INTEREST}"
        ).encode()
        client = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        return "POST", "/join/", {**FORM, "X-Forwarded-For": client}, body, 1

    def webhook(url, build):
        # One request in ten is sent again, as ESPs retry.
        last = []

        def make():
            if last and events.random.random() < 0.1:
                return "POST", url, JSON, *last[0]
            body = build()
            last[:] = [body]
            return "POST", url, JSON, *body

        return make

    return [
        ("GET  preference centre", args.preferences, preferences, b"Your email choices"),
        ("POST one-click unsubscribe", args.unsubscribe, unsubscribe, b"unsubscribed"),
        ("POST sign-up", args.join, join, b"Check your email"),
        (
            "POST postmark (1 event)",
            args.postmark,
            webhook("/anymail/postmark/tracking/", events.postmark),
            b"",
        ),
        (
            "POST mailgun (1 event)",
            args.mailgun,
            webhook("/anymail/mailgun/tracking/", events.mailgun),
            b"",
        ),
        (
            f"POST sendgrid ({args.sendgrid_batch} events)",
            args.sendgrid,
            webhook("/anymail/sendgrid/tracking/", lambda: events.sendgrid(args.sendgrid_batch)),
            b"",
        ),
    ]


# -- the load generator -----------------------------------------------------------------------


class Connections:
    """Keep-alive HTTP/1.1 connections to the server, reused by whichever request is next."""

    def __init__(self, port, limit):
        self.port = port
        self.idle = []
        self.free = asyncio.Semaphore(limit)

    async def request(self, method, path, headers, body):
        """Send one request; return (status, body)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
        if method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        async with self.free:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(head.encode() + b"\r\n" + body)
                status = int((await reader.readline()).split()[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                content = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status, content

    def close(self):
        for _, writer in self.idle:
            writer.close()


async def _one(connections, make, due, stats, expect):
    method, path, headers, body, events = make()
    try:
        status, content = await connections.request(method, path, headers, body)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        stats["errors"] += 1
        return
    # From when the request was due, not when it was sent: a server that falls
    # behind is not flattered by a generator that waits for it.
    stats["latency"].append(time.monotonic() - due)
    stats["due"].append(due)
    if status == 200 and expect in content:
        stats["events"] += events
    else:
        stats["bad"] += 1
        stats.setdefault("statuses", {}).setdefault(status, 0)
        stats["statuses"][status] += 1


async def _endpoint(port, make, rate, limit, start, stop_at, stats, expect):
    """Offer `rate` requests per second (open loop), or as many as `limit` connections carry."""
    connections = Connections(port, limit)
    if rate:
        running = set()
        due = start
        while due < stop_at:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(_one(connections, make, due, stats, expect))
            running.add(task)
            task.add_done_callback(running.discard)
            due += 1 / rate
        await asyncio.gather(*running)
    else:

        async def loop():
            while (due := time.monotonic()) < stop_at:
                await _one(connections, make, due, stats, expect)

        await asyncio.sleep(max(0, start - time.monotonic()))
        await asyncio.gather(*(loop() for _ in range(limit)))
    connections.close()


def _generate(port, specs, connections, start, stop_at, queue):
    results = {
        name: {"latency": [], "due": [], "bad": 0, "errors": 0, "events": 0} for name, *_ in specs
    }

    async def main():
        await asyncio.gather(
            *(
                _endpoint(port, make, rate, connections, start, stop_at, results[name], expect)
                for name, rate, make, expect in specs
            )
        )

    asyncio.run(main())
    queue.put(results)


def warm_up(args, specs):
    """Give every gunicorn process a few requests of each kind (templates, views, connections)."""
    queue = multiprocessing.Queue()
    start = time.monotonic() + 0.2
    gentle = [(name, 10, make, expect) for name, rate, make, expect in specs if rate >= 0]
    _generate(args.port, gentle, 8, start, start + 3, queue)
    queue.get()


def drive(args, specs, watch):
    """Run the endpoints for --seconds from two generator processes; return their results.

    `watch()` is called about once a second meanwhile.
    """
    pages = [spec for spec in specs[:3] if spec[1] >= 0]
    webhooks = [spec for spec in specs[3:] if spec[1] >= 0]
    queue = multiprocessing.Queue()
    start = time.monotonic() + 0.5
    stop_at = start + args.seconds
    processes = [
        multiprocessing.Process(
            target=_generate, args=(args.port, group, args.connections, start, stop_at, queue)
        )
        for group in (pages, webhooks)
        if group
    ]
    for process in processes:
        process.start()
    results = {}
    while len(results) < len(pages) + len(webhooks):
        try:
            results.update(queue.get(timeout=1))
        except Empty:
            watch()
    for process in processes:
        process.join()
    return results, time.monotonic() - start


# CPU accounting: the machine is shared, so besides rates print where the CPU
# went during the window, per process group, from /proc.

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_by_group(processes, database):
    """Return {name: CPU seconds so far} for each process group and PostgreSQL's backends."""
    groups = {process.pid: name for name, process in processes.items()}
    used = dict.fromkeys([*processes, "postgresql"], 0.0)
    backends = set(
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-At", "-c",
             f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"],
            capture_output=True, text=True, check=False,
        ).stdout.split()
    )  # fmt: skip
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            group = os.getpgid(pid)
        except OSError:
            continue
        if group in groups:
            used[groups[group]] += _cpu_seconds(pid)
        elif entry.name in backends:
            used["postgresql"] += _cpu_seconds(pid)
    return used


def machine_busy():
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


# -- main -------------------------------------------------------------------------------------


def main():
    args = parse_args()
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database: the targets are for it.")
    data = prepare(args)
    import redis
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count

    from crm.models import Supporter, Suppression
    from mailings import services
    from mailings.demo import BANNER, DUTY_TO_PREVENT, demo_blocks
    from mailings.models import Delivery, DeliveryEvent, Mailing
    from mailsink import MailSinkClient

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[-1]
    tmp = Path(tempfile.mkdtemp(prefix="rally-load-"))
    load = os.getloadavg()
    rate = args.send_rate or args.recipients / args.seconds
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} before the run\n"
        f"gunicorn gthread {args.web_workers} workers x {args.web_threads} threads; "
        f"celery: sender (2), webhooks ({args.webhook_workers}), default (1), beat"
        f"{f', at nice {args.nice}' if args.nice else ''}; "
        f"ESP simulator {args.latency_ms:g} ms per call; up to {args.connections} connections "
        f"per endpoint; {args.seconds:g} s\n"
        f"send: {args.recipients:,} recipients, {args.send_mode} "
        f"({'Mailgun, 1,000 per call' if args.send_mode == 'batch' else 'Postmark, one per call'}"
        f"), RALLY_SEND_RATE {rate:,.0f}/s"
    )
    processes = start_processes(args, tmp)
    sink = MailSinkClient(f"http://127.0.0.1:{args.sink_port}")
    backlog = []
    specs = endpoints(args, data)
    try:
        warm_up(args, specs)
        sink.clear()
        mailing = Mailing.objects.create(
            name="Load bench newsletter",
            subject='{{ first_name|default:"Friend" }}, the UK\'s duty to prevent atrocities',
            blocks=demo_blocks(DUTY_TO_PREVENT, f"/newsletters/images/{BANNER}"),
        )
        mailing.interests.set([data["interest"]])
        staff, _ = get_user_model().objects.get_or_create(
            username="loadbench", defaults={"is_staff": True}
        )
        if not args.no_send:
            services.mailing_send_now(mailing=mailing, actor=staff)
            deadline = time.monotonic() + 60
            while sink.count() == 0:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the send did not start; see {tmp}/processes.log")
                time.sleep(0.2)
        sent_before = sink.count()
        print(f"sending started ({sent_before:,} accepted); driving the endpoints\n")
        cpu_before, busy_before = cpu_by_group(processes, database), machine_busy()
        children_before = os.times()
        recorded_before = DeliveryEvent.objects.filter(mailing=data["earlier"]).count()

        def watch():
            backlog.append(DeliveryEvent.objects.filter(pending=True).count())

        window_start = time.monotonic() + 0.5  # as drive() starts the clock
        results, elapsed = drive(args, specs, watch)
        children_after = os.times()
        cpu_after, busy_after = cpu_by_group(processes, database), machine_busy()
        applied_in_window = (
            DeliveryEvent.objects.filter(mailing=data["earlier"], pending=False).count()
            - recorded_before
        )
        sent_after = sink.count()
        load_after = os.getloadavg()

        # The webhooks worker catches up.
        window_end = time.monotonic()
        deadline = window_end + 120
        while DeliveryEvent.objects.filter(pending=True).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        applied_after = time.monotonic() - window_end
        pending = DeliveryEvent.objects.filter(pending=True).count()
        recorded = DeliveryEvent.objects.filter(mailing=data["earlier"]).count()
    finally:
        stop_processes(processes)

    print(
        f"{'endpoint':<30} {'requests':>8} {'req/s':>7} {'events/s':>9} {'errors':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    failures = 0
    page_p99 = 0.0
    webhook_events = 0
    for name, stats in results.items():
        latency = sorted(stats["latency"])
        count = len(latency) + stats["errors"]
        errors = stats["bad"] + stats["errors"]
        failures += errors

        def pct(p, latency=latency):
            return latency[min(len(latency) - 1, int(p * len(latency)))] * 1000 if latency else 0

        webhook = "(" in name
        if webhook:
            webhook_events += stats["events"]
        else:
            page_p99 = max(page_p99, pct(0.99))
        print(
            f"{name:<30} {count:>8} {count / elapsed:>7.0f} "
            f"{stats['events'] / elapsed if webhook else 0:>9.0f} {errors:>6} {pct(0.5):>7.0f} "
            f"{pct(0.99):>7.0f} {(latency[-1] * 1000 if latency else 0):>7.0f}"
            + (f"  statuses {stats['statuses']}" if stats.get("statuses") else "")
        )
    # When the slow requests happened: the worst latency of each 5 seconds, all endpoints.
    worst = {}
    for stats in results.values():
        for due, latency in zip(stats["due"], stats["latency"], strict=True):
            slot = int((due - window_start) // 5)
            worst[slot] = max(worst.get(slot, 0), latency)
    print(
        "worst latency per 5 s: "
        + ", ".join(f"{slot * 5}s {worst[slot] * 1000:.0f} ms" for slot in sorted(worst))
    )
    ingestion = webhook_events / elapsed
    print(
        f"\nwebhook ingestion: {ingestion:,.0f} events/s accepted over {elapsed:.1f} s; "
        f"{recorded:,} distinct events recorded; pending (recorded, not yet applied) "
        f"sampled each second: max {max(backlog, default=0):,}, at the end "
        f"{backlog[-1] if backlog else 0:,}; all applied {applied_after:.1f} s after the window"
        + (f" ({pending:,} STILL PENDING)" if pending else "")
    )
    print(
        f"send during the window: {sent_after - sent_before:,} messages accepted by the "
        f"simulator ({(sent_after - sent_before) / elapsed:,.0f}/s)"
    )
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    spent = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    spent["load generator"] = (children_after[2] + children_after[3]) - (
        children_before[2] + children_before[3]
    )
    print(
        f"machine CPU busy during the window: {busy * 100:.0f}% of {os.cpu_count()} cores "
        f"(all processes, other work included); load average {load_after[0]:.2f} after it"
    )
    print(
        "CPU used during the window, in cores: "
        + ", ".join(f"{name} {seconds / elapsed:.2f}" for name, seconds in spent.items())
    )
    served = sum(len(stats["latency"]) for stats in results.values())
    server = spent["web"] + spent["postgresql"]
    print(
        f"server CPU per request (gunicorn and PostgreSQL): {server / served * 1000:.2f} ms "
        f"(gunicorn {spent['web'] / served * 1000:.2f}); per webhook event: "
        f"{server / max(1, webhook_events) * 1000:.3f} ms if the webhooks were all there was"
    )
    if applied_in_window:
        print(
            f"webhooks worker: {spent['webhooks'] / applied_in_window * 1000:.2f} ms of CPU per "
            f"event applied ({applied_in_window:,} events in the window)"
        )

    # Every supporter a bounce or complaint was recorded for has exactly one
    # suppression (the table is unique on the address's hash) and the status.
    stopped = set(
        DeliveryEvent.objects.filter(mailing=data["earlier"])
        .exclude(suppress_as="")
        .values_list("delivery__supporter_id", flat=True)
    )
    hashes = set(Supporter.objects.filter(pk__in=stopped).values_list("email_hash", flat=True))
    suppressed = Suppression.objects.filter(email_hash__in=hashes).count()
    wrong_status = (
        Supporter.objects.filter(pk__in=stopped)
        .exclude(status__in=["bounced", "complained", "unsubscribed", "erased"])
        .count()
    )
    print(
        f"suppressions: {len(stopped):,} supporters bounced, complained or unsubscribed at the "
        f"ESP; {suppressed:,} suppressions for them; {wrong_status} with the wrong status"
    )
    statuses = dict(
        Delivery.objects.filter(mailing=mailing)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    print(f"newsletter deliveries when the processes stopped: {statuses}")
    connection.close()

    ok_errors = failures == 0 and not pending
    ok_webhooks = ingestion >= 1000
    ok_pages = page_p99 < 200
    ok_suppression = suppressed == len(stopped) and wrong_status == 0
    print(
        f"\ntargets: no errors {'met' if ok_errors else 'NOT met'}; webhook ingestion >= 1,000 "
        f"events/s {'met' if ok_webhooks else 'NOT met'}; supporter pages p99 < 200 ms "
        f"{'met' if ok_pages else 'NOT met'} ({page_p99:.0f} ms); one suppression per bounce or "
        f"complaint {'met' if ok_suppression else 'NOT met'}"
    )
    return 0 if ok_errors and ok_webhooks and ok_pages and ok_suppression else 1


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    sys.exit(main())
