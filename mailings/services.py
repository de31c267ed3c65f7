"""Writes for mailings: the status workflow, test sends, GDPR.

The sending engine itself (claiming, sending, sweeping) is in mailings.sending;
tracking events from the ESPs' webhooks are in mailings.tracking.
"""

import logging
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from crm.models import AuditEvent, Supporter, normalize_email
from crm.services import audit_event_add
from mailings import abtests, emails, esp, sending
from mailings.composer import blocks as composer_blocks
from mailings.composer import checks
from mailings.composer import render as composer_render
from mailings.exceptions import MailingRefused
from mailings.models import Delivery, DeliveryEvent, Mailing

logger = logging.getLogger(__name__)


def _transition(mailing, *, allowed, to, **fields):
    """Move `mailing` to status `to` if it is in one of `allowed`; else refuse.

    A conditional UPDATE, so two staff pressing buttons at once cannot both win.
    A journey's email follows its journey (mailings.journeys), never a button of its own.
    """
    if mailing.kind == Mailing.Kind.JOURNEY:
        raise MailingRefused(
            f"“{mailing}” is a journey's email: it sends when supporters reach its step. "
            "Start, pause or end the journey on its page instead."
        )
    changed = Mailing.objects.filter(pk=mailing.pk, status__in=allowed).update(
        status=to, updated_at=timezone.now(), **fields
    )
    if not changed:
        mailing.refresh_from_db()
        raise MailingRefused(
            f"“{mailing}” is {mailing.get_status_display().lower()}, so it cannot be "
            f"{Mailing.Status(to).label.lower()} now."
        )
    mailing.refresh_from_db()
    return mailing


def mailing_check_ready(*, mailing: Mailing) -> None:
    """Raise MailingRefused saying what to fix if `mailing` cannot be sent as it is."""
    problems = []
    if not mailing.subject.strip():
        problems.append("add a subject")
    content = mailing.content_blocks()
    if not content:
        problems.append("write the body")
    if not mailing.interests.exists() and not mailing.include_segments.exists():
        problems.append("choose at least one interest or segment to send to")
    try:
        emails.check_merge_fields(
            mailing.subject,
            mailing.preheader,
            mailing.body_text,
            *composer_blocks.merge_texts(content),
        )
    except emails.MergeFieldError as error:
        problems.append(error.message)
    if not problems:
        blocking = [
            problem
            for problem in checks.blocking_problems(mailing)
            if problem.code in checks.NOT_OVERRIDABLE or mailing.checks_overridden_at is None
        ]
        if blocking:
            problems.append(
                "fix what the accessibility check found ("
                + "; ".join(str(problem).rstrip(".") for problem in blocking)
                + "), or ask a campaign manager to allow sending anyway"
            )
    problems += abtests.problems(mailing)
    if problems:
        raise MailingRefused("Before sending, " + "; ".join(problems) + ".")


def mailing_schedule(*, mailing: Mailing, send_at, actor) -> Mailing:
    """Schedule `mailing` to start sending at `send_at` (picked up by the dispatcher)."""
    if send_at <= timezone.now():
        raise MailingRefused("Choose a time in the future, or send now.")
    mailing_check_ready(mailing=mailing)
    return _transition(
        mailing,
        allowed=Mailing.EDITABLE_STATUSES,
        to=Mailing.Status.SCHEDULED,
        scheduled_at=send_at,
        sent_by=actor,
    )


def mailing_unschedule(*, mailing: Mailing, actor) -> Mailing:
    """Take a scheduled mailing back to draft."""
    return _transition(
        mailing, allowed=[Mailing.Status.SCHEDULED], to=Mailing.Status.DRAFT, scheduled_at=None
    )


def mailing_send_now(*, mailing: Mailing, actor) -> Mailing:
    """Start sending `mailing`: resolve its audience and queue the work, in the background."""
    from mailings import tasks

    mailing_check_ready(mailing=mailing)
    with transaction.atomic():
        mailing = _transition(
            mailing,
            allowed=Mailing.EDITABLE_STATUSES,
            to=Mailing.Status.SENDING,
            started_at=timezone.now(),
            sent_by=actor,
            last_error="",
        )
        tasks.start_mailing.delay_on_commit(mailing.pk)
    return mailing


def mailing_start(*, mailing_id: int) -> int:
    """Resolve a sending mailing's audience into deliveries (once) and start the senders.

    Return the number of recipients. Safe to repeat: a second call finds the
    audience resolved and only makes sure senders are running.
    """
    sending.audience_tables_analyze()
    with transaction.atomic():
        mailing = Mailing.objects.select_for_update().filter(pk=mailing_id).first()
        if mailing is None or mailing.status != Mailing.Status.SENDING:
            return 0
        if mailing.recipient_count is None:
            started = time.monotonic()
            Mailing.objects.filter(pk=mailing.pk).update(heartbeat_at=timezone.now())
            count = sending.mailing_resolve_audience(mailing=mailing)
            # Before any sender can claim a row: the rest of an A/B test wait for its winner.
            abtests.deliveries_assign_variants(mailing=mailing)
            mailing.recipient_count = count
            mailing.audience_seconds = time.monotonic() - started
            mailing.heartbeat_at = timezone.now()
            mailing.save(update_fields=["recipient_count", "audience_seconds", "heartbeat_at"])
            logger.info(
                "Mailing %s: %s recipients resolved in %.2fs",
                mailing.pk,
                count,
                mailing.audience_seconds,
            )
            transaction.on_commit(sending.deliveries_analyze)
        sending.mailing_enqueue_senders(mailing=mailing)
    return mailing.recipient_count


def mailings_dispatch_due(*, now=None) -> list[int]:
    """Start every scheduled mailing whose time has come; return their ids."""
    from mailings import tasks

    started = []
    for mailing in Mailing.objects.due(now):
        with transaction.atomic():
            changed = Mailing.objects.filter(pk=mailing.pk, status=Mailing.Status.SCHEDULED).update(
                status=Mailing.Status.SENDING, started_at=timezone.now(), last_error=""
            )
            if changed:
                tasks.start_mailing.delay_on_commit(mailing.pk)
                started.append(mailing.pk)
    return started


def mailing_pause(*, mailing: Mailing, actor) -> Mailing:
    """Stop claiming new work; messages already with the ESP call finish."""
    return _transition(mailing, allowed=[Mailing.Status.SENDING], to=Mailing.Status.PAUSED)


def mailing_resume(*, mailing: Mailing, actor) -> Mailing:
    """Carry on sending a paused mailing."""
    from mailings import tasks

    with transaction.atomic():
        mailing = _transition(
            mailing, allowed=[Mailing.Status.PAUSED], to=Mailing.Status.SENDING, last_error=""
        )
        if mailing.recipient_count is None:
            tasks.start_mailing.delay_on_commit(mailing.pk)
        else:
            sending.mailing_enqueue_senders(mailing=mailing)
    return mailing


def mailing_cancel(*, mailing: Mailing, actor) -> Mailing:
    """Cancel a mailing: nothing more goes out. Messages already sent stay sent."""
    with transaction.atomic():
        mailing = _transition(
            mailing,
            allowed=[
                Mailing.Status.DRAFT,
                Mailing.Status.SCHEDULED,
                Mailing.Status.SENDING,
                Mailing.Status.PAUSED,
            ],
            to=Mailing.Status.CANCELLED,
            finished_at=timezone.now(),
        )
        Delivery.objects.filter(
            mailing=mailing, status__in=[Delivery.Status.QUEUED, Delivery.Status.HELD]
        ).update(status=Delivery.Status.CANCELLED, error="The mailing was cancelled.")
    return mailing


def deliveries_resend_unknown(*, mailing: Mailing, actor) -> int:
    """Queue again the deliveries whose fate is unknown; return how many.

    Staff choose this knowing some of those supporters may get the mailing twice.
    """
    with transaction.atomic():
        count = Delivery.objects.filter(mailing=mailing, status=Delivery.Status.UNKNOWN).update(
            status=Delivery.Status.QUEUED, retry_at=None, dispatched_at=None, error=""
        )
        if count:
            Mailing.objects.filter(pk=mailing.pk, status=Mailing.Status.SENT).update(
                status=Mailing.Status.SENDING, finished_at=None
            )
            mailing.refresh_from_db()
            if mailing.status == Mailing.Status.SENDING:
                sending.mailing_enqueue_senders(mailing=mailing)
    return count


def mailing_override_checks(*, mailing: Mailing, actor) -> Mailing:
    """Allow `mailing` to be sent despite the accessibility check's blocking problems.

    Only staff who may send mailings can; the audit trail records who, and the
    problems they allowed. Content that cannot be sent at all (invalid blocks,
    unknown merge fields) still cannot.
    """
    if not actor.has_perm("mailings.send_mailing"):
        raise MailingRefused("Only staff who may send mailings can allow sending anyway.")
    problems = checks.blocking_problems(mailing)
    if any(problem.code in checks.NOT_OVERRIDABLE for problem in problems):
        raise MailingRefused(
            "This newsletter cannot be sent as it is: "
            + "; ".join(str(p) for p in problems if p.code in checks.NOT_OVERRIDABLE)
        )
    with transaction.atomic():
        mailing_update_check(mailing=mailing)
        now = timezone.now()
        Mailing.objects.filter(pk=mailing.pk).update(
            checks_overridden_by=actor, checks_overridden_at=now
        )
        audit_event_add(
            AuditEvent.Kind.CHECKS_OVERRIDDEN,
            actor=actor,
            source="admin",
            mailing_id=mailing.pk,
            mailing=mailing.name,
            problems=[{"code": p.code, "where": p.where, "message": p.message} for p in problems],
        )
    mailing.checks_overridden_by = actor
    mailing.checks_overridden_at = now
    return mailing


def mailing_update_check(*, mailing: Mailing) -> None:
    """Refuse (MailingRefused) to change a mailing once sending has started.

    A journey's email may be corrected while its journey runs (Mailing.is_editable).
    """
    current = Mailing.objects.filter(pk=mailing.pk).values_list("status", "kind").first()
    if current is not None and current[1] == Mailing.Kind.JOURNEY:
        return
    if current is not None and current[0] not in Mailing.EDITABLE_STATUSES:
        raise MailingRefused(
            "This mailing can no longer be edited: sending has started. "
            "Duplicate it to write a new one."
        )


def mailing_duplicate(*, mailing: Mailing, actor) -> Mailing:
    """Return a new draft with the same content and audience."""
    with transaction.atomic():
        copy = Mailing.objects.create(
            name=f"Copy of {mailing.name}"[:200],
            subject=mailing.subject,
            preheader=mailing.preheader,
            from_name=mailing.from_name,
            from_email=mailing.from_email,
            reply_to=mailing.reply_to,
            body_html=mailing.body_html,
            body_text=mailing.body_text,
            blocks=mailing.blocks,
            template=mailing.template,
            created_by=actor,
        )
        copy.interests.set(mailing.interests.all())
        copy.include_segments.set(mailing.include_segments.all())
        copy.exclude_segments.set(mailing.exclude_segments.all())
        abtests.abtest_copy(source=mailing, to=copy)
    return copy


def refused_for_test_send(addresses) -> list[str]:
    """Return those of `addresses` a test send may not go to, in order.

    A test may carry any supporter's details, so it goes only to active staff
    accounts' addresses and to RALLY_TEST_SEND_ALLOWED: addresses, or "@domain"
    for every address at a domain (an inbox-preview service, say).
    """
    allowed = {normalize_email(entry) for entry in settings.RALLY_TEST_SEND_ALLOWED}
    keys = {normalize_email(address) for address in addresses}
    staff = set(
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .annotate(email_key=Lower("email"))
        .filter(email_key__in=keys)
        .values_list("email_key", flat=True)
    )
    refused = []
    for address in addresses:
        key = normalize_email(address)
        if key not in staff and key not in allowed and f"@{key.rpartition('@')[2]}" not in allowed:
            refused.append(address)
    return refused


def mailing_send_test(*, mailing: Mailing, to: list[str], supporter=None, actor=None) -> int:
    """Send `mailing` now to the staff addresses `to`, merged for `supporter` (or a sample).

    Refuse (MailingRefused) any address refused_for_test_send() names. Nothing is
    recorded as a delivery, and the links in it are harmless stand-ins, so a
    click on "unsubscribe" in a test changes nobody. An address the ESP refuses
    is named in the error; the others are still sent.
    """
    if not to:
        raise MailingRefused(
            "Your staff account has no email address. Add one to your account to get test sends."
        )
    refused = refused_for_test_send(to)
    if refused:
        raise MailingRefused(
            f"Test sends go only to staff accounts' addresses and those allowed for tests "
            f"(RALLY_TEST_SEND_ALLOWED), not to {', '.join(refused)}."
        )
    supporter = supporter or sample_supporter()
    try:
        prepared = emails.PreparedMailing(mailing)
    except emails.MergeFieldError as error:
        raise MailingRefused(error.message) from None
    except (composer_blocks.BlockError, composer_render.RenderError) as error:
        raise MailingRefused(" ".join(getattr(error, "messages", [str(error)]))) from None
    messages = []
    for address in to:
        message = prepared.message(
            supporter, links_for=emails.PREVIEW_LINKS, subject_prefix="[Test] "
        )
        message.to = [address]
        message.tags = ["test"]
        messages.append(message)
    # One call per address, so an address the ESP refuses can be named (staff
    # then know which to fix) and does not stop the others.
    connection = get_connection()
    sent, failed = [], []
    for message in messages:
        try:
            if connection.send_messages([message]):
                sent.append(message.to[0])
        except Exception as error:
            failed.append(f"{message.to[0]}: {esp.classify(error).reason}")
    if failed:
        done = f" It was sent to {', '.join(sent)}." if sent else ""
        raise MailingRefused(f"The test could not be sent to {'; '.join(failed)}{done}")
    return len(sent)


def sample_supporter():
    """Return a made-up supporter for previews when staff pick no one."""
    return Supporter(
        pk=0,
        email="sam.sample@example.org",
        first_name="Sam",
        last_name="Sample",
        postcode="SW1A 1AA",
    )


# -- GDPR -------------------------------------------------------------------------------------


def mail_data_erase(*, supporter):
    """Remove personal data the mailing history holds about `supporter`.

    Called by crm.services.supporter_erase inside its transaction. Delivery
    rows stay (anonymised through the supporter) so mailing reports keep
    their counts; the ESP's words about the address (bounce descriptions,
    refusals) and the links they clicked, which may carry personal tokens or
    the address itself, are cleared.
    """
    Delivery.objects.filter(supporter=supporter).update(error="")
    DeliveryEvent.objects.filter(delivery__supporter=supporter).update(url="", reason="")


def mail_data_export(*, supporter):
    """Return what the mailing history holds about `supporter`, for a data export."""
    deliveries = (
        Delivery.objects.filter(supporter=supporter)
        .select_related("mailing")
        .order_by("created_at")
    )
    return {
        "mailings": [
            {
                "mailing": delivery.mailing.name,
                "subject": delivery.mailing.subject,
                "status": delivery.status,
                "sent_at": _iso(delivery.sent_at),
                "delivered_at": _iso(delivery.delivered_at),
                "first_opened_at": _iso(delivery.opened_at),
                "first_clicked_at": _iso(delivery.clicked_at),
                "bounced_at": _iso(delivery.bounced_at),
                "complained_at": _iso(delivery.complained_at),
                "events": [
                    {"type": event.event_type, "when": _iso(event.timestamp), "url": event.url}
                    for event in delivery.events.order_by("timestamp")
                ],
            }
            for delivery in deliveries
        ]
    }


def _iso(value):
    return value.isoformat() if value else None


def settings_summary():
    """Return the sending configuration in force, for the admin and the benchmark."""
    connection = get_connection()
    syntax = esp.batch_syntax(connection)
    return {
        "esp": getattr(connection, "esp_name", type(connection).__name__),
        "batch_sending": bool(settings.RALLY_BATCH_SEND and syntax),
        "batch_requested": settings.RALLY_BATCH_SEND,
        "rate": settings.RALLY_SEND_RATE,
        "batch_size": settings.RALLY_SEND_BATCH_SIZE,
        "concurrency": settings.RALLY_SEND_CONCURRENCY,
        "lease_seconds": settings.RALLY_SEND_LEASE_SECONDS,
    }
