"""
ESP calls: render claimed deliveries, call the ESP (in batches, or one message per
call with several in flight) and record each result straight after the call.
"""

import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests
from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mailings import emails, esp, sql, throttle
from mailings.models import Delivery, Mailing, Variant
from mailings.sending.claims import _reconnecting, worker_name

logger = logging.getLogger(__name__)


RETRY_BASE_SECONDS = 2
RETRY_MAX_SECONDS = 600


SUPPORTER_FIELDS = (
    "supporter__id",
    "supporter__email",
    "supporter__first_name",
    "supporter__last_name",
    "supporter__postcode",
    "supporter__link_version",
)


_local = threading.local()


def _backend_key():
    return (settings.EMAIL_BACKEND, repr(sorted(settings.ANYMAIL.items())))


def _connection(key):
    """Return this thread's open Anymail backend, reused across messages (keep-alive)."""
    cached = getattr(_local, "connection", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        connection = get_connection()
        connection.open()
        _read_environment_once(connection)
        _local.connection = cached = (key, connection)
    return cached[1]


def _read_environment_once(connection):
    """Fix the connection's proxies, CA bundle and netrc login from the environment, once.

    A requests Session that trusts the environment reads all of os.environ
    (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE ...) and looks for ~/.netrc on
    every call: about 0.3 ms of a worker's CPU per message sent one per call
    (docs/performance.md, "The composer"). Every call of a connection goes to
    the one ESP host, so the answer cannot change between calls: read it for
    that host when the connection opens and keep it on the session.
    """
    session = getattr(connection, "session", None)
    api_url = getattr(connection, "api_url", "")
    if not isinstance(session, requests.Session) or not session.trust_env or not api_url:
        return  # not a requests-based Anymail backend (the test backend, Amazon SES)
    found = session.merge_environment_settings(api_url, {}, None, None, None)
    session.proxies, session.verify, session.cert = found["proxies"], found["verify"], found["cert"]
    session.auth = session.auth or requests.utils.get_netrc_auth(api_url)
    session.trust_env = False


_pool = {}


def _executor(size):
    pool = _pool.get(os.getpid(), (0, None))
    if pool[0] != size:
        executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="rally-send")
        _pool[os.getpid()] = pool = (size, executor)
    return pool[1]


def _send_one(key, message):
    """Send one message on this thread's connection; return None or the exception."""
    try:
        _connection(key).send_messages([message])
    except Exception as error:  # classified by the caller, in one place
        return error
    return None


def deliveries_send(*, mailing: Mailing, ids: list[int]) -> None:
    """Send the claimed deliveries `ids` and record each result."""
    rows = list(
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING)
        .select_related("supporter")
        .only("id", "attempts", "supporter_id", "variant_id", *SUPPORTER_FIELDS)
        .order_by("pk")
    )
    if not rows:
        return
    # Someone may have unsubscribed, bounced or been erased since the audience
    # was resolved (a paused mailing can wait for days): check again.
    still = set(
        mailing.audience()
        .filter(pk__in=[row.supporter_id for row in rows])
        .values_list("pk", flat=True)
    )
    gone = [row.pk for row in rows if row.supporter_id not in still]
    if gone:
        Delivery.objects.filter(pk__in=gone).update(
            status=Delivery.Status.SKIPPED,
            claimed_until=None,
            error="No longer subscribed or mailable when its turn came.",
        )
        rows = [row for row in rows if row.supporter_id in still]
    if not rows:
        return
    # An A/B test's recipients get their variant (all rows share one otherwise).
    groups = {}
    for row in rows:
        groups.setdefault(row.variant_id, []).append(row)
    variants = Variant.objects.in_bulk([pk for pk in groups if pk is not None])
    try:
        prepared = {pk: emails.prepare(mailing, variant=variants.get(pk)) for pk in groups}
    except Exception as error:
        _stop_mailing(mailing, rows, f"The newsletter could not be rendered: {error}")
        return
    key = _backend_key()
    syntax = esp.batch_syntax(_connection(key)) if settings.RALLY_BATCH_SEND else None
    for pk, group in groups.items():
        if syntax:
            limit = min(settings.RALLY_SEND_BATCH_SIZE, esp.BATCH_LIMIT.get(_esp_name(key), 500))
            for start in range(0, len(group), limit):
                _send_batch(mailing, prepared[pk], group[start : start + limit], key, syntax)
        else:
            _send_individually(mailing, prepared[pk], group, key)


def _esp_name(key):
    return getattr(_connection(key), "esp_name", "")


def _lease_left():
    # Wait for the send rate only while the lease comfortably holds.
    return settings.RALLY_SEND_LEASE_SECONDS / 3


@_reconnecting
def _dispatch(rows):
    """Commit that `rows` are about to go to the ESP; return those this worker still holds.

    Their lease is renewed, so it outlasts the call (the lease is at least
    twice the ESP call's timeout). A row whose lease ran out meanwhile (a
    worker stalled for minutes) may be another worker's by now: left out.
    """
    if not rows:
        return []
    now = timezone.now()
    until = now + timedelta(seconds=settings.RALLY_SEND_LEASE_SECONDS)
    held = sql.deliveries_dispatch(
        [row.pk for row in rows], now=now, until=until, worker=worker_name()
    )
    if len(held) < len(rows):
        logger.warning("%s deliveries were no longer this worker's to send", len(rows) - len(held))
    return [row for row in rows if row.pk in held]


def _send_batch(mailing, prepared, rows, key, syntax):
    """One ESP call for `rows`; on a refusal of the whole call, split it to find the culprit."""
    try:
        message = prepared.batch_message([(row.pk, row.supporter) for row in rows], syntax)
    except Exception as error:
        # Something about one recipient cannot be built: one by one finds who.
        logger.warning(
            "Mailing %s: batch could not be built (%s); sending one by one",
            mailing.pk,
            type(error).__name__,
        )
        _send_individually(mailing, prepared, rows, key)
        return
    if not throttle.wait_for_turn(len(rows), limit=_lease_left()):
        _retry(
            rows, esp.Outcome(esp.SLOW_DOWN, "Waiting for the send rate.", throttle.paused_for())
        )
        return
    held = _dispatch(rows)
    if len(held) < len(rows):
        if held:  # send what is still ours, in a message without the others
            _send_batch(mailing, prepared, held, key, syntax)
        return
    error = _send_one(key, message)
    if error is not None:
        outcome = esp.classify(error)
        if outcome.kind == esp.PERMANENT and len(rows) > 1:
            # One bad address, or more recipients than the ESP takes per call,
            # refuses the whole call: halve until the culprit stands alone.
            half = len(rows) // 2
            _send_batch(mailing, prepared, rows[:half], key, syntax)
            _send_batch(mailing, prepared, rows[half:], key, syntax)
            return
        _record_failures(mailing, [(row, outcome) for row in rows], one_call=True)
        return
    throttle.esp_accepted()
    _record_statuses(mailing, rows, message.anymail_status)


def _send_individually(mailing, prepared, rows, key):
    """One message per recipient, `RALLY_SEND_CONCURRENCY` calls in flight at a time."""
    size = max(1, settings.RALLY_SEND_CONCURRENCY)
    executor = _executor(size)
    for start in range(0, len(rows), size):
        chunk, messages, unbuildable = [], [], []
        for row in rows[start : start + size]:
            try:
                messages.append(prepared.message(row.supporter, delivery_id=row.pk))
                chunk.append(row)
            except Exception as error:
                unbuildable.append((row, esp.Outcome(esp.PERMANENT, _unbuildable(error))))
        _record_failures(mailing, unbuildable)
        if not chunk:
            continue
        if not throttle.wait_for_turn(len(chunk), limit=_lease_left()):
            rest = chunk + rows[start + size :]
            _retry(rest, esp.Outcome(esp.SLOW_DOWN, "Waiting for the send rate.", 1.0))
            return
        held = {row.pk for row in _dispatch(chunk)}
        if len(held) < len(chunk):
            kept = [(row, m) for row, m in zip(chunk, messages, strict=True) if row.pk in held]
            chunk, messages = [row for row, _ in kept], [m for _, m in kept]
        errors = list(executor.map(lambda message: _send_one(key, message), messages))
        sent, failures = [], []
        for row, message, error in zip(chunk, messages, errors, strict=True):
            if error is None:
                sent.append((row, message.anymail_status))
            else:
                failures.append((row, esp.classify(error)))
        if sent:
            throttle.esp_accepted()
        accepted = [(row, status) for row, status in sent if _accepted(row, status)]
        _record_sent([(row, _message_id(status.message_id)) for row, status in accepted])
        failures += [
            (row, esp.Outcome(esp.PERMANENT, "The ESP refused the recipient."))
            for row, status in sent
            if not _accepted(row, status)
        ]
        _record_failures(mailing, failures)


def _message_id(value):
    return "" if value is None else str(value)


def _unbuildable(error):
    # The reason is for staff; the exception's text may hold the address, so it
    # goes on the delivery (erased with the supporter), not in the log.
    logger.warning("A message could not be built: %s", type(error).__name__)
    return f"The message could not be built: {error}"[:500]


def _accepted(row, anymail_status):
    statuses = {s.lower() if s else s for s in anymail_status.status or ()}
    return not statuses or not statuses <= esp.rejected_statuses()


def _record_statuses(mailing, rows, anymail_status):
    """Record a batch call's per-recipient answers."""
    recipients = {address.lower(): status for address, status in anymail_status.recipients.items()}
    sent, failures = [], []
    for row in rows:
        status = recipients.get(row.supporter.email.lower())
        if status is not None and status.status in esp.rejected_statuses():
            failures.append((row, esp.Outcome(esp.PERMANENT, "The ESP refused the recipient.")))
        else:
            message_id = status.message_id if status else None
            if message_id is None:
                message_id = anymail_status.message_id
            sent.append((row, _message_id(message_id)))
    _record_sent(sent)
    _record_failures(mailing, failures)


@_reconnecting
def _record_sent(pairs):
    """Commit "sent" for (delivery, ESP message id) pairs: one statement per call's worth."""
    if not pairs:
        return
    now = timezone.now()
    ids = {str(message_id)[:255] for _, message_id in pairs}
    if len(ids) == 1:
        # A batch call: one message id for every recipient.
        Delivery.objects.filter(pk__in=[row.pk for row, _ in pairs]).update(
            status=Delivery.Status.SENT,
            sent_at=now,
            esp_message_id=ids.pop(),
            claimed_until=None,
            retry_at=None,
            error="",
        )
        return
    # Each message its own id: one UPDATE … FROM (VALUES …), on PostgreSQL and SQLite alike.
    sql.deliveries_mark_sent(
        [(row.pk, str(message_id)[:255]) for row, message_id in pairs], now=now
    )


def _backoff(attempts):
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.5)


def _retry(rows, outcome, *, esp_down=False):
    """Put `rows` back in the queue to try again later (or fail them after too many tries).

    While the ESP is down (`esp_down`) the try is not the message's fault:
    it does not count, and the rows wait as long as every worker holds back.
    """
    now = timezone.now()
    counted = outcome.kind != esp.SLOW_DOWN and not esp_down
    hold_back = max(throttle.paused_for(), 1.0) if esp_down else 0.0
    give_up, again = [], []
    for row in rows:
        if counted and row.attempts >= settings.RALLY_SEND_MAX_ATTEMPTS:
            give_up.append(row)
        else:
            again.append(row)
    with transaction.atomic():
        if give_up:
            Delivery.objects.filter(pk__in=[row.pk for row in give_up]).update(
                status=Delivery.Status.FAILED,
                claimed_until=None,
                error=f"Gave up after {settings.RALLY_SEND_MAX_ATTEMPTS} attempts: "
                f"{outcome.reason}"[:500],
            )
        for row in again:
            if outcome.kind == esp.SLOW_DOWN:
                # Being told to slow down is not the message's fault: do not count it.
                delay = max(outcome.retry_after or 1.0, 0.5) * random.uniform(1.0, 1.2)
                attempts = max(0, row.attempts - 1)
            elif esp_down:
                delay = hold_back * random.uniform(1.0, 1.2)
                attempts = max(0, row.attempts - 1)
            else:
                delay = max(_backoff(row.attempts), outcome.retry_after or 0)
                attempts = row.attempts
            Delivery.objects.filter(pk=row.pk).update(
                status=Delivery.Status.QUEUED,
                claimed_until=None,
                dispatched_at=None,
                retry_at=now + timedelta(seconds=delay),
                attempts=attempts,
                error=outcome.reason[:500],
            )


@_reconnecting
def _record_failures(mailing, failures, *, one_call=False):
    """Record why `failures` (row, Outcome) were not sent: each its own ESP call, or `one_call`."""
    if not failures:
        return
    slow = [(row, outcome) for row, outcome in failures if outcome.kind == esp.SLOW_DOWN]
    if slow:
        throttle.pause_all(max(outcome.retry_after or 1.0 for _, outcome in slow))
        _retry([row for row, _ in slow], slow[0][1])
    transient = [(row, outcome) for row, outcome in failures if outcome.kind == esp.TRANSIENT]
    if transient:
        rows, outcome = [row for row, _ in transient], transient[0][1]
        # A call counts once towards "the ESP is down", however many it carried:
        # one batch that keeps failing is not an outage.
        calls = rows[:1] if one_call else rows
        esp_down = throttle.esp_failed([row.pk for row in calls], outcome.reason)
        _retry(rows, outcome, esp_down=esp_down)
    permanent = [(row, outcome) for row, outcome in failures if outcome.kind == esp.PERMANENT]
    with transaction.atomic():
        for row, outcome in permanent:
            Delivery.objects.filter(pk=row.pk).update(
                status=Delivery.Status.FAILED, claimed_until=None, error=outcome.reason[:500]
            )
    if permanent:
        logger.info("Mailing %s: %s deliveries refused by the ESP", mailing.pk, len(permanent))


def _stop_mailing(mailing, rows, reason):
    """Pause a mailing that cannot be sent as it is, returning its claimed rows to the queue."""
    logger.error("Mailing %s paused: %s", mailing.pk, reason)
    with transaction.atomic():
        Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=Delivery.Status.QUEUED,
            claimed_until=None,
            dispatched_at=None,
            attempts=F("attempts") - 1,
        )
        Mailing.objects.filter(pk=mailing.pk, status=Mailing.Status.SENDING).update(
            status=Mailing.Status.PAUSED, last_error=reason[:2000]
        )
