"""
kill -9 of the worker (which runs beat's journey tick and the senders) at random
points while 5,000 supporters go through a three-email journey with waits
shortened to seconds, each time restarted: every supporter receives each email
once, in order, and nobody skips a step. The kill points are drawn from a
seeded random source (the seed is printed; RALLY_FAULT_SEED replays it).
"""

import time
from collections import Counter, defaultdict

import pytest
from django.db.models import Count

from crm.models import Segment, SegmentMembership
from mailings.journeys import services
from mailings.journeys.models import Enrolment, Journey, JourneyStep, StepVisit
from mailings.models import Delivery
from tests.integration.harness import subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SUPPORTERS = 5_000
KILLS = 3
SUBJECTS = ["Welcome", "What R2P is", "One thing you can do"]
JOURNEY_SPEED = {
    "RALLY_JOURNEY_DAY_SECONDS": "2",  # "wait 1 day" lasts two seconds
    "RALLY_JOURNEY_TICK_SECONDS": "1",
    "RALLY_JOURNEY_TICK_BUDGET_SECONDS": "5",
    "RALLY_JOURNEY_LEASE_SECONDS": "5",
    "RALLY_JOURNEY_POLL_SECONDS": "1",
    "RALLY_JOURNEY_BATCH_SIZE": "500",
    "RALLY_SEND_BATCH_SIZE": "100",
    "RALLY_SEND_CONCURRENCY": "16",
}


def _journey(interest, segment, staff):
    journey = Journey.objects.create(
        name="Welcome series", trigger=Journey.Trigger.SEGMENT, trigger_segment=segment
    )
    journey.interests.set([interest])
    kinds = ["email", "wait", "email", "wait", "email"]
    emails = iter(SUBJECTS)
    for position, kind in enumerate(kinds, start=1):
        step = JourneyStep.objects.create(
            journey=journey, position=position, kind=kind, wait_days=1 if kind == "wait" else None
        )
        if kind == "email":
            mailing = services.journey_email_create(step=step)
            mailing.subject = next(emails)
            mailing.body_html = '<p>Dear {{ first_name|default:"friend" }},</p>'
            mailing.save()
    return services.journey_start(journey=journey, actor=staff)


def test_worker_killed_at_random_points_sends_each_step_once_in_order(
    sink, broker, workers, chaos, django_user_model
):
    interest, readers = subscribers(SUPPORTERS)
    segment = Segment.objects.create(name="Everyone", kind=Segment.Kind.STATIC)
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=segment, supporter=reader) for reader in readers
    )
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = workers(sink, batch=True, **JOURNEY_SPEED)
    total = SUPPORTERS * len(SUBJECTS)
    shares = sorted(chaos.uniform(0.05, 0.9) for _ in range(KILLS))
    worker.start()
    started = time.monotonic()
    journey = _journey(interest, segment, staff)

    killed_at = []
    for share in shares:
        since_start = sink.count()
        wait_until(
            lambda s=share, n=since_start: sink.count() >= max(total * s, n + 50), 150, worker
        )
        time.sleep(chaos.uniform(0, 0.3))  # anywhere in a claim, a tick or an ESP call
        worker.restart()
        killed_at.append(sink.count())
    everyone_done = Enrolment.objects.filter(journey=journey, state=Enrolment.State.DONE)
    wait_until(lambda: everyone_done.count() == SUPPORTERS, 150, worker)
    wait_until(lambda: sink.count() >= total, 60, worker)
    finished = time.monotonic() - started

    assert worker.starts == KILLS + 1
    # Each email once to each supporter, and in order.
    received = Counter((m.address, m.subject) for m in sink.messages())
    twice = {key: n for key, n in received.items() if n > 1}
    assert twice == {}, f"sent twice: {list(twice)[:5]}"
    assert len(received) == total, "someone missed an email"
    order = defaultdict(list)
    for message in sink.messages():
        order[message.address].append(message.subject)
    assert all(subjects == SUBJECTS for subjects in order.values())
    assert set(order) == {reader.email for reader in readers}
    # Nobody skipped a step: every enrolment reached all five, and every delivery was sent.
    visits = Counter(
        StepVisit.objects.filter(enrolment__journey=journey)
        .values("enrolment")
        .annotate(n=Count("pk"))
        .values_list("n", flat=True)
    )
    assert visits == {5: SUPPORTERS}
    statuses = Counter(
        Delivery.objects.filter(mailing__journey_steps__journey=journey).values_list(
            "status", flat=True
        )
    )
    assert statuses == {"sent": total}
    reclaimed = Delivery.objects.filter(
        mailing__journey_steps__journey=journey, attempts__gt=1
    ).count()
    print(
        f"Killed after {killed_at} messages; {total} sent in {finished:.1f} s; "
        f"{reclaimed} deliveries claimed again"
    )
