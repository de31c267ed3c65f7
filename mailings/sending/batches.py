"""
The sending task's loop: claim and send batches until none are left or time is up.
"""

import contextlib
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from mailings import guard, reports, throttle
from mailings.models import Delivery, Mailing
from mailings.sending.claims import claim_size, deliveries_claim, deliveries_release, worker_name
from mailings.sending.esp_calls import deliveries_send

# A sending task waits for the ESP's pause (429, outage) or for retry times up
# to this far ahead by queueing its successor (Celery countdown) for then.
RETRY_WAIT_MAX_SECONDS = 300
HOLD_BACK_IN_TASK_SECONDS = 0.5
TASK_BUDGET_SECONDS = 60  # a sending task hands over to a fresh one after this long


def mailing_send_batches(*, mailing_id: int, budget: float = TASK_BUDGET_SECONDS) -> str:
    """Claim and send batches of a sending mailing until none are left or time is up.

    Return why it stopped: "stopped" (not sending), "idle" (no claimable
    work), "waiting" (for retry times, or for the ESP: see mailing_resume_in)
    or "handed over" (a fresh task continues).
    """
    from mailings import tasks

    deadline = time.monotonic() + budget
    worker = worker_name()
    while True:
        mailing = Mailing.objects.filter(pk=mailing_id).first()
        if mailing is None or mailing.status != Mailing.Status.SENDING:
            return "stopped"
        if mailing.recipient_count is None:
            return "stopped"  # the audience is not resolved yet; mailing_start will enqueue us
        if throttle.paused_for() > HOLD_BACK_IN_TASK_SECONDS:
            return "waiting"  # the ESP asked us to slow down, or is down
        if guard.mailing_guard_check(mailing=mailing):
            return "stopped"  # too many bounces or complaints: staff decide
        ids = deliveries_claim(mailing_id=mailing_id, limit=claim_size(), worker=worker)
        if not ids:
            if mailing_finish_if_done(mailing_id=mailing_id):
                return "idle"
            waiting = Delivery.objects.filter(
                mailing_id=mailing_id, status=Delivery.Status.QUEUED, retry_at__isnull=False
            )
            return "waiting" if waiting.exists() else "idle"  # else: the rest is in flight
        try:
            deliveries_send(mailing=mailing, ids=ids)
        except Exception:
            # Redis or the database went away, or a bug: what never reached the
            # ESP goes to another worker now, not when the lease runs out.
            with contextlib.suppress(DatabaseError, InterfaceError):
                deliveries_release(ids=ids, worker=worker)
            raise
        if time.monotonic() > deadline:
            tasks.send_mailing_batches.delay(mailing_id)
            return "handed over"


def mailing_resume_in(*, mailing_id: int) -> float | None:
    """Return the seconds until waiting deliveries of `mailing_id` may be tried, or None.

    A sending task that stops to wait for a retry time, or for the ESP,
    queues its successor that far ahead. The mailing's heartbeat is set to
    that time, so the sweeper does not start more tasks meanwhile; it still
    steps in if the successor is lost.
    """
    now = timezone.now()
    next_retry = (
        Delivery.objects.filter(
            mailing_id=mailing_id, status=Delivery.Status.QUEUED, retry_at__isnull=False
        )
        .order_by("retry_at")
        .values_list("retry_at", flat=True)
        .first()
    )
    paused = throttle.paused_for()
    if next_retry is None and not paused:
        return None
    if next_retry is not None:
        paused = max(paused, (next_retry - now).total_seconds())
    wait = min(max(paused, HOLD_BACK_IN_TASK_SECONDS), RETRY_WAIT_MAX_SECONDS)
    Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.SENDING).update(
        heartbeat_at=now + timedelta(seconds=wait)
    )
    return wait


def mailing_finish_if_done(*, mailing_id: int) -> bool:
    """Mark a sending mailing sent once no delivery is queued or in flight, and count its figures.

    The figures (Mailing.stats) are what the mailing list shows; beat counts
    them again as opens and clicks arrive (reports.stats_refresh_recent).
    """
    if Delivery.objects.filter(mailing_id=mailing_id).unfinished().exists():
        return False
    # A journey email sends whenever a supporter reaches its step: it never finishes.
    finished = Mailing.objects.filter(
        pk=mailing_id,
        status=Mailing.Status.SENDING,
        recipient_count__isnull=False,
        kind=Mailing.Kind.NEWSLETTER,
    ).update(status=Mailing.Status.SENT, finished_at=timezone.now())
    if finished:
        reports.stats_refresh(Mailing.objects.get(pk=mailing_id))
    return bool(finished)


def mailing_enqueue_senders(*, mailing: Mailing) -> None:
    """Start RALLY_SEND_TASKS sending tasks for `mailing` once the transaction commits."""
    from mailings import tasks

    for _ in range(max(1, settings.RALLY_SEND_TASKS)):
        tasks.send_mailing_batches.delay_on_commit(mailing.pk)
