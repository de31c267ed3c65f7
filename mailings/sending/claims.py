"""
Claims: lease queued deliveries to one worker, and hand back what it never dispatched.
"""

import functools
import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db
from django.db.models import F, Q
from django.utils import timezone

from mailings import sql
from mailings.models import Delivery, Mailing

logger = logging.getLogger(__name__)


# Pauses before writing again after the database connection was lost (a failover,
# a restarted proxy, an idle connection cut): about eight seconds in all.
RECONNECT_DELAYS = (0.1, 0.5, 2.0, 5.0)


def worker_name():
    """Name the claimant: this machine, process and thread (tasks may run in threads)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{threading.get_ident()}"[:100]


def _reconnecting(write):
    """Run the idempotent database write `write` again after a lost connection.

    What the ESP accepted must be recorded: a worker that gave up here would
    leave the deliveries to the sweeper, which can ask only some ESPs what
    they accepted, so with others they would end "fate unknown".
    """

    @functools.wraps(write)
    def run(*args, **kwargs):
        for delay in (*RECONNECT_DELAYS, None):
            try:
                return write(*args, **kwargs)
            except (OperationalError, InterfaceError) as error:
                if delay is None or db.in_atomic_block:
                    raise
                logger.warning(
                    "Database connection lost while sending (%s); reconnecting in %ss",
                    type(error).__name__,
                    delay,
                )
                db.close()
                time.sleep(delay)

    return run


def claim_size():
    size = max(1, settings.RALLY_SEND_BATCH_SIZE)
    if settings.RALLY_SEND_RATE > 0:
        # Never claim more than ten seconds' worth: the lease must outlast the wait.
        size = min(size, max(1, int(settings.RALLY_SEND_RATE * 10)))
    return size


def deliveries_claim(*, mailing_id: int, limit: int, worker: str) -> list[int]:
    """Lease up to `limit` queued deliveries of a sending mailing to `worker`; return their ids.

    Two workers never get the same delivery: PostgreSQL skips rows another
    transaction has locked, and SQLite runs one writer at a time.
    """
    now = timezone.now()
    until = now + timedelta(seconds=settings.RALLY_SEND_LEASE_SECONDS)
    sending = Mailing.Status.SENDING
    if sql.in_use():
        ids = sql.deliveries_claim(
            mailing_id=mailing_id, limit=limit, worker=worker, until=until, now=now
        )
    else:
        with transaction.atomic():
            if not Mailing.objects.filter(pk=mailing_id, status=sending).exists():
                return []
            ids = list(
                Delivery.objects.filter(mailing_id=mailing_id)
                .claimable(now)
                .order_by("pk")
                .values_list("pk", flat=True)[:limit]
            )
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.QUEUED).update(
                status=Delivery.Status.SENDING,
                claimed_until=until,
                claimed_by=worker,
                attempts=F("attempts") + 1,
                dispatched_at=None,
            )
    if ids:
        # The sweeper restarts a sending mailing whose heartbeat goes quiet.
        Mailing.objects.filter(pk=mailing_id).filter(
            Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - timedelta(seconds=2))
        ).update(heartbeat_at=now)
    return ids


@_reconnecting
def deliveries_release(*, ids: list[int], worker: str) -> int:
    """Hand back the deliveries among `ids` that `worker` claimed and never dispatched.

    Return how many were queued again. A delivery whose worker keeps
    stopping before the ESP call is failed, as the sweeper does.
    """
    held = Delivery.objects.filter(
        pk__in=ids, status=Delivery.Status.SENDING, claimed_by=worker, dispatched_at__isnull=True
    )
    held.filter(attempts__gte=settings.RALLY_SEND_MAX_ATTEMPTS).update(
        status=Delivery.Status.FAILED,
        claimed_until=None,
        error="Its worker stopped before sending it, too many times.",
    )
    return held.update(status=Delivery.Status.QUEUED, claimed_until=None, claimed_by="")
