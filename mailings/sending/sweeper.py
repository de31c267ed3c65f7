"""
Step 3: the sweeper (Celery beat) brings every sending mailing back on track from
database state.
"""

import logging
from datetime import timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import get_connection
from django.utils import timezone

from mailings import esp, guard
from mailings.models import Delivery, Mailing
from mailings.sending.batches import mailing_enqueue_senders, mailing_finish_if_done

logger = logging.getLogger(__name__)


def deliveries_recover(*, mailing_id: int, now=None) -> dict:
    """Resolve deliveries of `mailing_id` whose lease expired (their worker died).

    Never dispatched: queued again. Dispatched: the ESP may have the message,
    so ask it; "accepted" → sent, "not accepted" → queued again, "cannot
    tell" → unknown (never sent twice; staff may choose to resend).
    """
    now = now or timezone.now()
    expired = Delivery.objects.filter(mailing_id=mailing_id).lease_expired(now)
    counts = {"requeued": 0, "sent": 0, "unknown": 0, "failed": 0}
    undispatched = expired.filter(dispatched_at__isnull=True)
    # A row whose worker keeps dying before the ESP call is poison, not bad luck.
    counts["failed"] += undispatched.filter(attempts__gte=settings.RALLY_SEND_MAX_ATTEMPTS).update(
        status=Delivery.Status.FAILED,
        claimed_until=None,
        error="Its worker stopped before sending it, too many times.",
    )
    counts["requeued"] += undispatched.update(
        status=Delivery.Status.QUEUED, claimed_until=None, claimed_by=""
    )
    rows = list(
        expired.filter(dispatched_at__isnull=False)
        .select_related("supporter")
        .only("id", "dispatched_at", "supporter__email")
        .order_by("pk")[:2000]
    )
    if not rows:
        return counts
    tracked = set(
        Delivery.objects.filter(pk__in=[r.pk for r in rows], events__isnull=False).values_list(
            "pk", flat=True
        )
    )
    connection = get_connection()
    sender = _sender(mailing_id)
    for row in rows:
        fate = expired.filter(pk=row.pk)  # still expired: a late worker may have finished it
        if row.pk in tracked:
            # A tracking event names this delivery: the ESP had it.
            counts["sent"] += fate.update(
                status=Delivery.Status.SENT, sent_at=row.dispatched_at, claimed_until=None
            )
            continue
        try:
            message_id = esp.accepted_message_id(
                connection,
                delivery_id=row.pk,
                address=row.supporter.email,
                since=row.dispatched_at,
                sender=sender,
            )
        except esp.LookupUnavailable as error:
            counts["unknown"] += fate.update(
                status=Delivery.Status.UNKNOWN,
                claimed_until=None,
                error=f"The worker stopped during the ESP call and the ESP could not say whether "
                f"it accepted the message ({error}). Not resent, to avoid a duplicate.",
            )
            continue
        if message_id:
            counts["sent"] += fate.update(
                status=Delivery.Status.SENT,
                sent_at=row.dispatched_at,
                esp_message_id=str(message_id)[:255],
                claimed_until=None,
                error="",
            )
        else:
            counts["requeued"] += fate.update(
                status=Delivery.Status.QUEUED, claimed_until=None, dispatched_at=None, claimed_by=""
            )
    if any(counts.values()):
        logger.info("Mailing %s: recovered expired deliveries %s", mailing_id, counts)
    return counts


def _sender(mailing_id):
    """Return the From address `mailing_id` is sent with (some ESPs search by sending domain)."""
    own = Mailing.objects.filter(pk=mailing_id).values_list("from_email", flat=True).first()
    return own or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]


def deliveries_sweep(*, now=None) -> dict:
    """Bring every sending mailing back on track from database state; return what was done.

    Run periodically (Celery beat). Safe to run at any time and any number
    of times at once.
    """
    from mailings import tasks

    now = now or timezone.now()
    done = {"recovered": 0, "restarted": [], "resolved": [], "finished": [], "guarded": []}
    for mailing_id in (
        Delivery.objects.lease_expired(now).values_list("mailing_id", flat=True).distinct()
    ):
        done["recovered"] += sum(deliveries_recover(mailing_id=mailing_id, now=now).values())
    stall = now - timedelta(seconds=settings.RALLY_SEND_STALL_SECONDS)
    for mailing in Mailing.objects.sending():
        quiet = mailing.heartbeat_at is None or mailing.heartbeat_at < stall
        if mailing.recipient_count is None:
            if quiet:
                # The start task was lost (or is still resolving: a repeat waits
                # for its lock and then finds the work done).
                tasks.start_mailing.delay(mailing.pk)
                done["resolved"].append(mailing.pk)
            continue
        if mailing_finish_if_done(mailing_id=mailing.pk):
            done["finished"].append(mailing.pk)
            continue
        if guard.mailing_guard_check(mailing=mailing, force=True):
            done["guarded"].append(mailing.pk)
            continue
        if quiet and Delivery.objects.filter(mailing=mailing).claimable(now).exists():
            mailing_enqueue_senders(mailing=mailing)
            done["restarted"].append(mailing.pk)
    return done
