"""
kill -9 of the sending worker at random points of a 5,000-recipient newsletter,
several times, each time restarted: every reader gets it exactly once and the
mailing ends "sent". The kill points and the moment within a call are drawn
from a seeded random source (the seed is printed; RALLY_FAULT_SEED replays it).
"""

import time

import pytest
from django.db.models import F

from mailings import services
from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory
from tests.integration.harness import assert_exactly_once, subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS = 5_000
KILLS = 3
# Enough in flight that a kill lands between claiming, calling and recording.
SPEED = {
    False: {"RALLY_SEND_BATCH_SIZE": "100", "RALLY_SEND_CONCURRENCY": "16"},
    True: {"RALLY_SEND_BATCH_SIZE": "100"},
}


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
def test_worker_killed_at_random_points_sends_each_reader_once(
    sink, broker, workers, chaos, batch, django_user_model
):
    interest, readers = subscribers(RECIPIENTS)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = workers(sink, batch=batch, **SPEED[batch])
    shares = sorted(chaos.uniform(0.05, 0.85) for _ in range(KILLS))
    worker.start()
    started = time.monotonic()
    services.mailing_send_now(mailing=mailing, actor=staff)

    killed_at, moments = [], []
    for share in shares:
        since_start = sink.count()
        # Each kill lands mid-send: past its share, and once the fresh worker is sending.
        wait_until(
            lambda s=share, n=since_start: sink.count() >= max(RECIPIENTS * s, n + 50), 120, worker
        )
        time.sleep(chaos.uniform(0, 0.1))  # anywhere in the claim, call, record cycle
        worker.restart()
        killed_at.append(sink.count())
        moments.append(round(time.monotonic() - started, 1))
    wait_until(lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 180, worker)
    finished = time.monotonic() - started

    assert worker.starts == KILLS + 1
    assert all(count < RECIPIENTS for count in killed_at), killed_at
    assert_exactly_once(sink, mailing, readers)
    # The kills caught work in flight: some deliveries were claimed again, or found
    # at the ESP by the sweeper (recorded as sent at the moment they were dispatched).
    deliveries = Delivery.objects.filter(mailing=mailing)
    reclaimed = deliveries.filter(attempts__gt=1).count()
    found_at_esp = deliveries.filter(sent_at=F("dispatched_at")).count()
    print(
        f"Killed after {killed_at} messages (at {moments} s), sent in "
        f"{finished:.1f} s; {reclaimed} reclaimed, {found_at_esp} found at the ESP"
    )
    assert reclaimed + found_at_esp > 0
