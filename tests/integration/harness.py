"""
Helpers for tests that run a real Celery worker against Redis and the ESP
simulator: start it as a subprocess on the test database, kill it like a
crashed machine, restart it, and check that every recipient got the mailing
exactly once.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from crm.models import Subscription, Supporter, email_hash
from mailings.models import Delivery
from tests.factories import CampaignInterestFactory

ROOT = Path(__file__).resolve().parents[2]


def database_url():
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )


class Worker:
    """A `celery worker -B` subprocess that can be killed like a crashed machine.

    `queues` are the queues it consumes; `env` overrides its environment (e.g.
    RALLY_SEND_RATE="50", or REDIS_URL for a broker of the test's own).
    """

    def __init__(self, tmp_path, sink, *, batch, queues="celery,sending", **env):
        self.tmp_path = tmp_path
        self.queues = queues
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.REDIS_URL,
            "RALLY_VAR_DIR": str(tmp_path),
            "SITE_URL": "https://rally.example.org",
            "RALLY_SEND_LEASE_SECONDS": "5",
            "ANYMAIL_REQUESTS_TIMEOUT": "2",
            "RALLY_SEND_STALL_SECONDS": "3",
            "RALLY_SWEEP_SECONDS": "1",
            "RALLY_DISPATCH_SECONDS": "1",
            "RALLY_SEND_TASKS": "2",
            "RALLY_SEND_CONCURRENCY": "4",
            "RALLY_SEND_BATCH_SIZE": "10" if batch else "40",
            "RALLY_BATCH_SEND": "1" if batch else "0",
            "LOG_LEVEL": "WARNING",
        }
        if batch:
            self.env.update(
                EMAIL_BACKEND="anymail.backends.mailgun.EmailBackend",
                ANYMAIL_MAILGUN_API_KEY="key-test",
                ANYMAIL_MAILGUN_API_URL=sink.mailgun_api_url,
                ANYMAIL_MAILGUN_SENDER_DOMAIN="rally.example.org",
            )
        else:
            self.env.update(
                EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
                ANYMAIL_POSTMARK_SERVER_TOKEN="test-token",
                ANYMAIL_POSTMARK_API_URL=sink.postmark_api_url,
            )
        self.env.update(env)  # e.g. RALLY_SEND_RATE="50" for a test that needs it
        self.process = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = (self.tmp_path / f"worker-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app",
                "project",
                "worker",
                "--beat",
                "--queues",
                self.queues,
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.tmp_path / "beat-schedule"),
                "--hostname",
                f"test-{self.starts}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self):
        """SIGKILL the worker and its children, as if the machine lost power."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self):
        """Kill the worker (SIGKILL) and start a fresh one, as after a crash."""
        self.kill()
        self.start()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def logs(self):
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp_path.glob("worker-*.log")))

    def log_count(self, text):
        """Return how many lines of this worker's logs, over every start, contain `text`."""
        return sum(
            line.count(text) > 0
            for path in self.tmp_path.glob("worker-*.log")
            for line in path.read_text().splitlines()
        )


def subscribers(count):
    interest = CampaignInterestFactory(slug="r2p", name="Responsibility to Protect")
    supporters = Supporter.objects.bulk_create(
        Supporter(
            email=f"reader{n}@example.org",
            email_hash=email_hash(f"reader{n}@example.org"),
            first_name=f"Reader{n}",
        )
        for n in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(supporter=s, interest=interest, status=Subscription.Status.SUBSCRIBED)
        for s in supporters
    )
    return interest, supporters


def wait_until(condition, timeout, worker):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"Timed out. Worker logs:\n{worker.logs()}")


def assert_exactly_once(sink, mailing, supporters):
    received = Counter(sink.recipients())
    duplicates = {address: n for address, n in received.items() if n > 1}
    assert duplicates == {}, f"sent twice: {duplicates}"
    assert set(received) == {s.email for s in supporters}, "someone was missed"
    deliveries = Delivery.objects.filter(mailing=mailing)
    statuses = Counter(deliveries.values_list("status", flat=True))
    assert statuses == {"sent": len(supporters)}, f"delivery statuses: {dict(statuses)}"
    # The ESP's record of each message names the delivery that sent it.
    by_address = {m.address: m.metadata["delivery_id"] for m in sink.messages()}
    expected = {d.supporter.email: str(d.pk) for d in deliveries.select_related("supporter")}
    assert by_address == expected


def bounce_back(client, sink, addresses, *, since=0):
    """Be the ESP reporting hard bounces: post Postmark's bounce webhook for each message
    the sink recorded after record `since` to one of `addresses`, and apply them.

    Return the id of the last record looked at (pass it as `since` next time).
    """
    import json

    from django.test import override_settings

    from mailings import tracking

    secret = {**settings.ANYMAIL, "WEBHOOK_SECRET": "rally:webhook-secret"}
    last = since
    for record in sink.messages(since=since):
        last = record.id
        if record.address not in addresses:
            continue
        payload = {
            "RecordType": "Bounce",
            "MessageStream": "broadcast",
            "ID": 7_000_000 + record.id,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "Tag": "newsletter",
            "MessageID": record.message_id,
            "Metadata": record.metadata,
            "ServerID": 23,
            "Description": "The server was unable to deliver your message (ex: unknown user).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": record.address,
            "From": record.from_email,
            "BouncedAt": "2026-11-05T16:33:54.9070259Z",
            "DumpAvailable": False,
            "Inactive": True,
            "CanActivate": True,
            "Subject": record.subject,
        }
        with override_settings(ANYMAIL=secret):
            response = client.post(
                "/anymail/postmark/tracking/",
                data=json.dumps(payload),
                content_type="application/json",
                HTTP_AUTHORIZATION="Basic cmFsbHk6d2ViaG9vay1zZWNyZXQ=",  # rally:webhook-secret
            )
        assert response.status_code == 200
    tracking.delivery_events_apply_pending()
    return last
