"""
A real Celery worker, a real Redis broker and the ESP simulator: the worker is
killed with SIGKILL mid-send and restarted, the queue is wiped, and still every
recipient gets the newsletter exactly once.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.db.models import F

from crm.models import Subscription, Supporter, email_hash
from mailings import services
from mailings.models import Delivery, Mailing
from tests.factories import CampaignInterestFactory, MailingFactory
from tests.sinks import LookupMailSink

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]


def database_url():
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )


class Worker:
    """A `celery worker -B` subprocess that can be killed like a crashed machine."""

    def __init__(self, tmp_path, sink, *, batch):
        self.tmp_path = tmp_path
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
                "celery,sending",
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

    def logs(self):
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp_path.glob("worker-*.log")))


@pytest.fixture
def sink():
    with LookupMailSink(port=0, latency_ms=150) as running:
        yield running


@pytest.fixture
def broker():
    """An empty Redis database for the broker (and the send-rate keys)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


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
    assert Counter(deliveries.values_list("status", flat=True)) == {"sent": len(supporters)}
    # The ESP's record of each message names the delivery that sent it.
    by_address = {m.address: m.metadata["delivery_id"] for m in sink.messages()}
    expected = {d.supporter.email: str(d.pk) for d in deliveries.select_related("supporter")}
    assert by_address == expected


@pytest.mark.parametrize("batch", [False, True], ids=["individual", "batch"])
def test_killed_worker_restarts_and_every_reader_gets_it_once(
    tmp_path, sink, broker, batch, django_user_model
):
    interest, supporters = subscribers(400)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = Worker(tmp_path, sink, batch=batch)
    worker.start()
    try:
        services.mailing_send_now(mailing=mailing, actor=staff)
        for share in (0.2, 0.55):
            wait_until(lambda s=share: sink.count() >= len(supporters) * s, 90, worker)
            worker.kill()
            worker.start()
        wait_until(
            lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker
        )
    finally:
        worker.kill()

    assert worker.starts == 3
    assert_exactly_once(sink, mailing, supporters)
    # The kills landed mid-send: some deliveries were claimed again, or found at the
    # ESP by the sweeper (recorded as sent when they were dispatched).
    deliveries = Delivery.objects.filter(mailing=mailing)
    reclaimed = deliveries.filter(attempts__gt=1).count()
    found_at_esp = deliveries.filter(sent_at=F("dispatched_at")).count()
    assert reclaimed + found_at_esp > 0


def test_lost_queue_is_rebuilt_from_the_database(tmp_path, sink, broker, django_user_model):
    """A broker restart without persistence loses every queued task; sending resumes anyway."""
    interest, supporters = subscribers(300)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = Worker(tmp_path, sink, batch=False)
    worker.start()
    try:
        services.mailing_send_now(mailing=mailing, actor=staff)
        wait_until(lambda: sink.count() >= 60, 90, worker)
        worker.kill()
        broker.flushdb()  # the broker comes back empty
        worker.start()
        wait_until(
            lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker
        )
    finally:
        worker.kill()

    assert_exactly_once(sink, mailing, supporters)
