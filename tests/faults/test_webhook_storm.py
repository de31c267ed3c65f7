"""
A storm of tracking webhooks: 50,000 events about 8,000 deliveries, duplicated
(ESPs retry), in random order (so a "delivered" often lands after the bounce
that followed it), posted concurrently from 16 connections to the real
/anymail/<esp>/tracking/ URLs of gunicorn on PostgreSQL, with a real Celery
worker on Redis applying them.

Five ESPs at once: SendGrid, Mailjet and SparkPost post batches of events,
Postmark and Mailgun one event per request (Mailgun's signed). Afterwards
every delivery's timestamps are exactly what its events say (first times the
earliest, last times the latest), every supporter a hard bounce, complaint or
ESP unsubscribe names is stopped with the strongest of them and has exactly
one suppression and one consent withdrawal, soft bounces and everyone else
are untouched, and each distinct event is stored once.
"""

import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from crm.models import ConsentRecord, Subscription, Supporter, Suppression, email_hash
from mailings.models import Delivery, DeliveryEvent
from tests.factories import CampaignInterestFactory, MailingFactory
from tests.integration.harness import ROOT, database_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

DELIVERIES = 8_000
EVENTS = 50_000
CONNECTIONS = 16
SECRET = "storm:webhook-secret"
AUTH = "Basic " + base64.b64encode(SECRET.encode()).decode()
MAILGUN_KEY = "storm-signing-key"
PORTS = range(18850, 18900)
# gunicorn as installed beside this Python, in whichever virtualenv runs the tests.
BIN = Path(sys.executable).parent
START = 1_790_000_000  # 2026-09-21: events' times, one second apart per delivery

# Share of deliveries per ESP; batching ESPs carry most of the storm, as they do.
ESPS = [("SendGrid", 50), ("Mailjet", 17), ("SparkPost", 17), ("Postmark", 8), ("Mailgun", 8)]
BATCHING = {"SendGrid", "Mailjet", "SparkPost"}
# What happens to a delivery: (story, weight). Each story is its events in time order.
STORIES = [
    (["delivered"], 30),
    (["delivered", "opened"], 20),
    (["delivered", "opened", "clicked", "opened"], 15),
    (["delivered", "opened", "opened", "clicked", "clicked"], 10),
    (["deferred", "delivered", "opened"], 6),
    (["deferred", "bounced"], 5),
    (["soft", "delivered"], 4),
    (["delivered", "opened", "complained"], 4),
    (["delivered", "unsubscribed"], 3),
    (["bounced", "complained"], 2),
    (["delivered", "complained", "unsubscribed"], 1),
]
STOPS = {"bounced": "bounced", "complained": "complained", "unsubscribed": "unsubscribed"}
STRENGTH = {"unsubscribed": 1, "bounced": 2, "complained": 3}
METHOD = {"bounced": "bounce", "complained": "complaint", "unsubscribed": "esp_unsubscribe"}
FIRST = {
    "delivered": "delivered_at",
    "deferred": "deferred_at",
    "soft": "deferred_at",
    "bounced": "bounced_at",
    "complained": "complained_at",
    "unsubscribed": "unsubscribed_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
}
LATEST = {"opened": "last_opened_at", "clicked": "last_clicked_at"}


# -- each ESP's literal webhook JSON -----------------------------------------------------------


def _iso(ts):
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def postmark(event):
    kind, ts, delivery, n = event
    meta = {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)}
    common = {"MessageID": delivery.esp_message_id, "Metadata": meta, "Tag": "newsletter"}
    common.update(ServerID=23, MessageStream="broadcast")
    address = delivery.supporter.email
    if kind == "delivered":
        return {"RecordType": "Delivery", "Recipient": address, "DeliveredAt": _iso(ts), **common}
    if kind in ("opened", "clicked"):
        record = "Open" if kind == "opened" else "Click"
        extra = {"OriginalLink": "https://example.org/strategy"} if kind == "clicked" else {}
        return {
            "RecordType": record,
            "Recipient": address,
            "ReceivedAt": _iso(ts),
            **extra,
            **common,
        }
    if kind == "unsubscribed":
        return {
            "RecordType": "SubscriptionChange",
            "Recipient": address,
            "ChangedAt": _iso(ts),
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
            **common,
        }
    bounce_type = {
        "bounced": "HardBounce",
        "soft": "SoftBounce",
        "deferred": "Transient",
        "complained": "SpamComplaint",
    }[kind]
    return {
        "RecordType": "SpamComplaint" if kind == "complained" else "Bounce",
        "ID": delivery.pk * 100 + n,
        "Type": bounce_type,
        "Email": address,
        "BouncedAt": _iso(ts),
        "Description": "The server was unable to deliver your message.",
        **common,
    }


def mailgun(event):
    kind, ts, delivery, n = event
    data = {
        "id": f"mg-{delivery.pk}-{n}",
        "timestamp": ts,
        "recipient": delivery.supporter.email,
        "tags": ["newsletter"],
        "user-variables": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "message": {"headers": {"message-id": delivery.esp_message_id}},
        "log-level": "info",
    }
    data.update(
        {
            "delivered": {"event": "delivered"},
            "opened": {"event": "opened"},
            "clicked": {"event": "clicked", "url": "https://example.org/strategy"},
            "deferred": {"event": "failed", "severity": "temporary", "reason": "generic"},
            "soft": {"event": "failed", "severity": "temporary", "reason": "generic"},
            "bounced": {
                "event": "failed",
                "severity": "permanent",
                "reason": "bounce",
                "delivery-status": {"code": 550, "message": "5.1.1 No such user"},
            },
            "complained": {"event": "complained"},
            "unsubscribed": {"event": "unsubscribed"},
        }[kind]
    )
    return data


def sendgrid(event):
    kind, ts, delivery, n = event
    data = {
        "email": delivery.supporter.email,
        "timestamp": ts,
        "sg_event_id": f"sg-{delivery.pk}-{n}",
        "sg_message_id": f"{delivery.esp_message_id}.filter0001",
        "category": ["newsletter"],
        "mailing_id": str(delivery.mailing_id),
        "delivery_id": str(delivery.pk),
    }
    data.update(
        {
            "queued": {"event": "processed"},
            "delivered": {"event": "delivered", "response": "250 OK"},
            "opened": {"event": "open", "useragent": "Mozilla/5.0"},
            "clicked": {"event": "click", "url": "https://example.org/strategy"},
            "deferred": {"event": "deferred", "response": "421 try later", "attempt": "1"},
            "soft": {"event": "bounce", "type": "blocked", "reason": "421 IP blocked"},
            "bounced": {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user"},
            "complained": {"event": "spamreport"},
            "unsubscribed": {"event": "unsubscribe"},
        }[kind]
    )
    return data


def mailjet(event):
    kind, ts, delivery, _ = event
    data = {
        "time": ts,
        "MessageID": int(delivery.esp_message_id.rsplit("-", 1)[1]),
        "email": delivery.supporter.email,
        "mj_campaign_id": 0,
        "mj_contact_id": delivery.supporter_id,
        "customcampaign": "newsletter",
        "Payload": json.dumps({"mailing_id": delivery.mailing_id, "delivery_id": delivery.pk}),
    }
    data.update(
        {
            "delivered": {"event": "sent", "smtp_reply": "250 OK"},
            "opened": {"event": "open", "ip": "127.0.0.1", "agent": "Mozilla/5.0"},
            "clicked": {"event": "click", "url": "https://example.org/strategy"},
            "deferred": {"event": "bounce", "hard_bounce": False, "error": "greylisted"},
            "soft": {"event": "bounce", "hard_bounce": False, "error": "quota exceeded"},
            "bounced": {"event": "bounce", "hard_bounce": True, "error": "user unknown"},
            "complained": {"event": "spam", "source": "JMRPP"},
            "unsubscribed": {"event": "unsub", "mj_list_id": 1},
        }[kind]
    )
    return data


def sparkpost(event):
    kind, ts, delivery, n = event
    data = {
        "event_id": f"sp-{delivery.pk}-{n}",
        "timestamp": str(ts),
        "transmission_id": delivery.esp_message_id,
        "raw_rcpt_to": delivery.supporter.email,
        "rcpt_to": delivery.supporter.email,
        "campaign_id": "newsletter",
        "rcpt_meta": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
    }
    data.update(
        {
            "queued": {"type": "injection"},
            "delivered": {"type": "delivery"},
            "opened": {"type": "open"},
            "clicked": {"type": "click", "target_link_url": "https://example.org/strategy"},
            "deferred": {"type": "delay", "bounce_class": "21"},
            "soft": {"type": "bounce", "bounce_class": "22", "raw_reason": "452 mailbox full"},
            "bounced": {"type": "bounce", "bounce_class": "10", "raw_reason": "550 no such user"},
            "complained": {"type": "spam_complaint", "fbtype": "abuse"},
            "unsubscribed": {"type": "list_unsubscribe", "mailfrom": "campaign@example.org"},
        }[kind]
    )
    group = {"opened": "track_event", "clicked": "track_event"}.get(kind, "message_event")
    if kind == "unsubscribed":
        group = "unsubscribe_event"
    return {"msys": {group: data}}


PAYLOADS = {
    "SendGrid": sendgrid,
    "Mailjet": mailjet,
    "SparkPost": sparkpost,
    "Postmark": postmark,
    "Mailgun": mailgun,
}
URLS = {esp: f"/anymail/{esp.lower()}/tracking/" for esp in PAYLOADS}


TOKENS = itertools.count()


def mailgun_body(event_data):
    """Sign a Mailgun event as Mailgun does: a fresh token per request."""
    token = f"storm-token-{next(TOKENS)}"
    timestamp = str(int(time.time()))
    signature = hmac.new(
        MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


# -- the storm --------------------------------------------------------------------------------


def plan(chaos):
    """Create the deliveries; return (each one's ESP, the distinct events, the posted ones)."""
    interest = CampaignInterestFactory(slug="r2p", name="Responsibility to Protect")
    mailing = MailingFactory(interests=[interest], status="sent")
    supporters = Supporter.objects.bulk_create(
        Supporter(email=f"storm{n}@example.org", email_hash=email_hash(f"storm{n}@example.org"))
        for n in range(DELIVERIES)
    )
    Subscription.objects.bulk_create(
        Subscription(supporter=s, interest=interest, status=Subscription.Status.SUBSCRIBED)
        for s in supporters
    )
    Delivery.objects.bulk_create(
        Delivery(
            mailing=mailing,
            supporter=s,
            status=Delivery.Status.SENT,
            esp_message_id=f"storm-message-{s.pk}",
        )
        for s in supporters
    )
    deliveries = list(Delivery.objects.filter(mailing=mailing).select_related("supporter"))
    names, weights = zip(*ESPS, strict=True)
    stories, story_weights = zip(*STORIES, strict=True)
    esp_of, unique = {}, []
    for delivery in deliveries:
        esp = chaos.choices(names, weights)[0]
        esp_of[delivery.pk] = esp
        story = list(chaos.choices(stories, story_weights)[0])
        if esp in ("SendGrid", "SparkPost"):
            story.insert(0, "queued")
        start = START + chaos.randrange(3600)
        unique.extend((kind, start + n, delivery, n) for n, kind in enumerate(story))
    # ESPs retry: some events arrive two or three times.
    posted = list(unique)
    while len(posted) < EVENTS:
        posted.append(chaos.choice(unique))
    chaos.shuffle(posted)
    return esp_of, unique, posted


def requests_for(posted, esp_of, chaos):
    """Group the posted events into HTTP requests: batches for batching ESPs, else one each."""
    waiting = defaultdict(list)
    for event in posted:
        waiting[esp_of[event[2].pk]].append(event)
    requests = []
    for esp, events in waiting.items():
        build = PAYLOADS[esp]
        if esp in BATCHING:
            while events:
                size = chaos.randint(20, 400)
                batch, events = events[:size], events[size:]
                requests.append((esp, [build(event) for event in batch], len(batch)))
        else:
            signed = {}
            for event in events:
                payload = build(event)
                if esp == "Mailgun":
                    # A retried webhook is the same request, signature and all.
                    key = (event[2].pk, event[3])
                    payload = signed.setdefault(key, mailgun_body(payload))
                requests.append((esp, payload, 1))
    chaos.shuffle(requests)
    return requests


def post_all(port, requests):
    """Post `requests` from CONNECTIONS threads at once; return Counter of statuses."""
    work = queue.Queue()
    for request in requests:
        work.put(request)
    statuses = Counter()
    lock = threading.Lock()

    def run():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        seen = Counter()
        while True:
            try:
                esp, payload, _ = work.get_nowait()
            except queue.Empty:
                break
            body = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", "Authorization": AUTH}
            try:
                connection.request("POST", URLS[esp], body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                seen[answer.status] += 1
            except (OSError, http.client.HTTPException) as error:
                seen[type(error).__name__] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()
        with lock:
            statuses.update(seen)

    threads = [threading.Thread(target=run) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def expected_state(unique):
    """Return ({delivery id: {column: datetime}}, {supporter id: set of stop kinds})."""
    columns = defaultdict(dict)
    stops = defaultdict(set)
    for kind, ts, delivery, _ in unique:
        moment = datetime.fromtimestamp(ts, UTC)
        row = columns[delivery.pk]
        if kind in FIRST:
            column = FIRST[kind]
            row[column] = min(row.get(column, moment), moment)
        if kind in LATEST:
            column = LATEST[kind]
            row[column] = max(row.get(column, moment), moment)
        if kind in STOPS:
            stops[delivery.supporter_id].add(STOPS[kind])
    return columns, stops


# -- processes --------------------------------------------------------------------------------


def _free_port():
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"No free port in {PORTS.start}-{PORTS.stop - 1}")


@pytest.fixture
def storm_servers(tmp_path, broker):
    """gunicorn and a "webhooks" Celery worker on the test database and Redis."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "RALLY_VAR_DIR": str(tmp_path),
        "DEBUG": "0",
        # The keys this process hashed the addresses with.
        "SECRET_KEY": settings.SECRET_KEY,
        "RALLY_SUPPRESSION_KEY": settings.RALLY_SUPPRESSION_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "CONN_MAX_AGE": "600",
        "ANYMAIL_WEBHOOK_SECRET": SECRET,
        "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        "RALLY_WEBHOOK_ESPS": ",".join(esp.lower() for esp in PAYLOADS),
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    log = (tmp_path / "servers.log").open("w")
    commands = [
        f"{BIN / 'gunicorn'} project.wsgi --bind 127.0.0.1:{port} --workers 3 "
        "--worker-class gthread --threads 4 --keep-alive 30",
        f"{sys.executable} -m celery --app project worker --queues webhooks --concurrency 3 "
        "--loglevel WARNING --without-gossip --without-mingle --hostname storm@%h",
    ]
    processes = [
        subprocess.Popen(
            command.split(),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for command in commands
    ]
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("HEAD", "/anymail/postmark/tracking/")
            if connection.getresponse().status == 200:
                break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail((tmp_path / "servers.log").read_text()[-3000:])
            time.sleep(0.2)
    yield port, lambda: (tmp_path / "servers.log").read_text()[-5000:]
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_webhook_storm_leaves_every_delivery_and_supporter_right(storm_servers, chaos):
    port, logs = storm_servers
    esp_of, unique, posted = plan(chaos)
    requests = requests_for(posted, esp_of, chaos)
    assert sum(count for *_, count in requests) == EVENTS

    started = time.monotonic()
    statuses = post_all(port, requests)
    posting = time.monotonic() - started
    deadline = time.monotonic() + 60
    while DeliveryEvent.objects.filter(pending=True).exists():
        assert time.monotonic() < deadline, f"events still pending after 60 s:\n{logs()}"
        time.sleep(0.2)
    print(
        f"{len(requests):,} requests ({EVENTS:,} events) posted in {posting:.1f}s; "
        f"all applied {time.monotonic() - started - posting:.1f}s later"
    )

    assert statuses == {200: len(requests)}, logs()
    # Each distinct event stored once, whatever the retries.
    assert DeliveryEvent.objects.count() == len(set(unique))

    columns, stops = expected_state(unique)
    tracked = sorted({column for mapping in (FIRST, LATEST) for column in mapping.values()})
    actual = {
        pk: dict(zip(tracked, values, strict=True))
        for pk, *values in Delivery.objects.values_list("pk", *tracked)
    }
    wrong = [
        pk
        for pk, row in actual.items()
        if row != {column: columns[pk].get(column) for column in tracked}
    ]
    assert wrong == [], f"{len(wrong)} deliveries with wrong timestamps, e.g. {wrong[:5]}"

    supporters = {s.pk: s for s in Supporter.objects.all()}
    status_wrong = [
        pk
        for pk, s in supporters.items()
        if s.status != (max(stops[pk], key=STRENGTH.get) if pk in stops else "active")
    ]
    assert status_wrong == []
    # Exactly one suppression for each supporter stopped, none for anyone else.
    suppressed = Counter(Suppression.objects.values_list("email_hash", flat=True))
    assert suppressed == Counter(supporters[pk].email_hash for pk in stops)
    withdrawals = defaultdict(list)
    for supporter_id, method in ConsentRecord.objects.filter(action="withdrawn").values_list(
        "supporter_id", "method"
    ):
        withdrawals[supporter_id].append(method)
    assert set(withdrawals) == set(stops)
    assert all(
        len(methods) == 1 and methods[0] in {METHOD[kind] for kind in stops[pk]}
        for pk, methods in withdrawals.items()
    ), "a supporter has more than one consent withdrawal, or one of the wrong kind"
    assert not Subscription.objects.filter(
        supporter_id__in=stops, status=Subscription.Status.SUBSCRIBED
    ).exists()
