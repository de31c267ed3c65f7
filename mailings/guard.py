"""
The deliverability guard: a mailing whose hard bounces or complaints run too
high pauses by itself, before it harms the sender's reputation.

A stale or never-opted-in partner list bounces (addresses that no longer
exist) and draws complaints; mailbox providers then send the charity's mail,
all of it, to spam. Gmail and Yahoo expect complaints under 0.1%, and a list
that bounces more than a few percent is not a list people agreed to.

Figures are judged per mailing (a newsletter, or a journey's email), as the
ESP's webhooks report bounces and complaints: by each sending task between
batches (at most every RALLY_GUARD_CHECK_SECONDS) and by the sweeper. The
rate is counted over the messages sent so far, but never over fewer than the
first RALLY_GUARD_WINDOW (or the whole audience, if smaller), so a handful of
early bounces does not stop a large mailing, and a flood of them still does.

Once staff resume a mailing the guard paused, it stays out of their way for
that mailing: they have looked and decided.
"""

import logging
import time

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from mailings.models import Delivery, Mailing

logger = logging.getLogger(__name__)

BOUNCES, COMPLAINTS = "bounces", "complaints"

ADVICE = {
    BOUNCES: (
        "Check where these addresses came from: a partner list that is old, was bought or "
        "was never opted in bounces like this. If the bounces say the message was refused "
        "rather than that the address does not exist, check the sender domain's SPF, DKIM "
        "and DMARC records with your email service. The report lists who bounced. Then "
        "resume (the guard will not pause this mailing again) or cancel."
    ),
    COMPLAINTS: (
        "People are marking this mailing as spam. Check that everyone in the audience agreed "
        "to hear from you about this topic (a partner list imported without consent draws "
        "complaints), and that the sender name and subject make clear who it is from. Then "
        "resume (the guard will not pause this mailing again) or cancel."
    ),
}

_last_checked = {}


def figures(mailing_id: int) -> dict:
    """Return the mailing's sent, hard-bounced and complained counts, in one query."""
    return Delivery.objects.filter(mailing_id=mailing_id).aggregate(
        sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
        bounced=Count("id", filter=Q(bounced_at__isnull=False) | Q(rejected_at__isnull=False)),
        complained=Count("id", filter=Q(complained_at__isnull=False)),
    )


def judge(*, sent: int, bounced: int, complained: int, recipients: int | None) -> tuple[str, str]:
    """Return (kind, sentence) when the figures pass a threshold, else ("", "")."""
    window = settings.RALLY_GUARD_WINDOW
    if recipients:
        window = min(window, recipients)
    basis = max(sent, window, 1)
    checks = (
        (BOUNCES, bounced, settings.RALLY_GUARD_BOUNCE_PERCENT, "hard bounced"),
        (COMPLAINTS, complained, settings.RALLY_GUARD_COMPLAINT_PERCENT, "complained"),
    )
    for kind, count, limit, verb in checks:
        if limit > 0 and count * 100 > basis * limit:
            if sent >= window:
                figure = (
                    f"{count:,} of the {sent:,} messages sent {verb} "
                    f"({100 * count / basis:.1f}%; the limit is {limit:g}%)."
                )
            else:
                figure = (
                    f"{count:,} of the {sent:,} messages sent so far {verb}: already "
                    f"{100 * count / basis:.1f}% of the first {window:,} (the limit is {limit:g}%)."
                )
            return kind, f"The deliverability guard paused sending: {figure}"
    return "", ""


def mailing_guard_check(*, mailing: Mailing, force: bool = False) -> bool:
    """Pause `mailing` if its bounces or complaints pass the limits; return whether it is paused.

    A conditional UPDATE (still sending, never tripped), so several workers
    checking at once pause it once. Without `force`, a process checks each
    mailing at most every RALLY_GUARD_CHECK_SECONDS.
    """
    if mailing.guard_tripped:
        return False  # staff resumed it after a pause: their call
    now = time.monotonic()
    if not force and now - _last_checked.get(mailing.pk, -1e9) < settings.RALLY_GUARD_CHECK_SECONDS:
        return False
    _last_checked[mailing.pk] = now
    if len(_last_checked) > 1000:
        _last_checked.clear()
    counts = figures(mailing.pk)
    kind, sentence = judge(**counts, recipients=mailing.recipient_count)
    if not kind:
        return False
    paused = Mailing.objects.filter(
        pk=mailing.pk, status=Mailing.Status.SENDING, guard_tripped=""
    ).update(
        status=Mailing.Status.PAUSED,
        guard_tripped=kind,
        last_error=f"{sentence} {ADVICE[kind]}",
        updated_at=timezone.now(),
    )
    if paused:
        logger.warning(
            "Mailing %s paused by the deliverability guard (%s): %s sent, %s bounced, "
            "%s complained",
            mailing.pk,
            kind,
            counts["sent"],
            counts["bounced"],
            counts["complained"],
        )
    return bool(paused)
