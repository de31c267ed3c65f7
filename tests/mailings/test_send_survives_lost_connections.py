"""
A sending task that loses its database connection, its Redis or its lease: it
records what the ESP accepted, hands back what it never sent, and never sends
a delivery that has become another worker's.
"""

import datetime
from collections import Counter

import psycopg
import pytest
import redis
import time_machine
from django.db import connection
from django.utils import timezone

from mailings import sending, services, throttle
from mailings.models import Delivery, Mailing
from mailings.sending import esp_calls
from tests.factories import SupporterFactory


@pytest.fixture(autouse=True)
def _clean_rate_state(fresh_cache):
    throttle.clear()
    yield
    throttle.clear()


@pytest.fixture
def readers(db, interest):
    return [
        SupporterFactory(email=f"reader{n}@example.org", subscribed_to=[interest]) for n in range(6)
    ]


@pytest.fixture
def mailing(newsletter, readers, campaign_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)
    newsletter.refresh_from_db()
    return newsletter


def statuses(mailing):
    return Counter(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))


def terminate_my_connection():
    """Have PostgreSQL drop this thread's Django connection, as a failover would."""
    settings = connection.settings_dict
    pid = connection.connection.info.backend_pid
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connection_dropped_during_the_esp_call_is_reopened_to_record_it(
    monkeypatch, settings, postmark_esp, mailing, readers
):
    """What the ESP accepted is recorded after reconnecting: not left to the sweeper."""
    postmark_esp.fail_lookups(503)  # the sweeper could only say "fate unknown"
    settings.RALLY_SEND_CONCURRENCY = 2
    real_dispatch = esp_calls._dispatch

    def dispatch_then_lose_the_database(rows):
        held = real_dispatch(rows)
        terminate_my_connection()  # found out when the call's outcome is recorded
        return held

    monkeypatch.setattr(esp_calls, "_dispatch", dispatch_then_lose_the_database)

    assert sending.mailing_send_batches(mailing_id=mailing.pk) == "idle"

    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    assert statuses(mailing) == {"sent": 6}
    assert all(Delivery.objects.filter(mailing=mailing).values_list("esp_message_id", flat=True))


@pytest.mark.django_db
def test_deliveries_no_longer_held_are_not_sent(postmark_esp, mailing):
    """A worker stalled past its lease finds its rows requeued and claimed again: it sends none."""
    ids = sending.deliveries_claim(mailing_id=mailing.pk, limit=10, worker=sending.worker_name())
    # Meanwhile the sweeper requeued three of them and another worker claimed those.
    taken = ids[:3]
    Delivery.objects.filter(pk__in=taken).update(claimed_by="elsewhere:1:1")

    sending.deliveries_send(mailing=mailing, ids=ids)

    assert len(postmark_esp.recipients()) == 3
    still_theirs = Delivery.objects.filter(pk__in=taken)
    assert set(still_theirs.values_list("status", "claimed_by", "dispatched_at")) == {
        ("sending", "elsewhere:1:1", None)
    }


@pytest.mark.django_db
def test_an_expired_lease_is_not_sent_on(postmark_esp, mailing):
    ids = sending.deliveries_claim(mailing_id=mailing.pk, limit=10, worker=sending.worker_name())

    later = timezone.now() + datetime.timedelta(seconds=301)
    with time_machine.travel(later, tick=False):
        sending.deliveries_send(mailing=mailing, ids=ids)

    assert postmark_esp.recipients() == []
    assert statuses(mailing) == {"sending": 6}  # left to the sweeper


@pytest.mark.django_db
def test_dispatching_renews_the_lease_for_the_call(monkeypatch, postmark_esp, mailing):
    """A claim near the end of its lease still gets a full lease for the ESP call."""
    ids = sending.deliveries_claim(mailing_id=mailing.pk, limit=10, worker=sending.worker_name())
    leases = []
    real_dispatch = esp_calls._dispatch

    def dispatch_and_look(rows):
        held = real_dispatch(rows)
        leases.extend(
            Delivery.objects.filter(pk__in=[row.pk for row in held]).values_list(
                "claimed_until", flat=True
            )
        )
        return held

    monkeypatch.setattr(esp_calls, "_dispatch", dispatch_and_look)
    later = timezone.now() + datetime.timedelta(seconds=240)
    with time_machine.travel(later, tick=False):
        sending.deliveries_send(mailing=mailing, ids=ids)

    assert len(leases) == 6
    assert min(leases) >= later + datetime.timedelta(seconds=299)
    assert statuses(mailing) == {"sent": 6}


@pytest.mark.django_db
def test_task_stopped_by_lost_redis_hands_back_its_claim_at_once(settings, postmark_esp, mailing):
    """Nothing was sent, so nothing waits for the lease to run out."""
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there

    with pytest.raises(redis.ConnectionError, match="Connection refused"):
        sending.mailing_send_batches(mailing_id=mailing.pk)

    assert postmark_esp.recipients() == []
    assert statuses(mailing) == {"queued": 6}
    assert set(Delivery.objects.filter(mailing=mailing).values_list("claimed_by", flat=True)) == {
        ""
    }
    settings.REDIS_URL = ""
    assert sending.mailing_send_batches(mailing_id=mailing.pk) == "idle"
    assert Counter(postmark_esp.recipients()) == {f"reader{n}@example.org": 1 for n in range(6)}
    assert Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.SENT
