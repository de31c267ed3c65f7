"""
The sending engine: resolve the audience, claim deliveries, send, record.

Every step works from database state, so any worker can pick up where a
dead one stopped, and the periodic sweeper can restart everything after
the broker lost its queue:

1. `mailing_resolve_audience` turns the audience into Delivery rows with one
   INSERT … SELECT (unique on mailing + supporter, so a repeat adds nothing).
2. `mailing_send_batches` (the task body) claims a batch of queued
   deliveries with a lease (SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL),
   renders them, commits `dispatched_at` (renewing the lease, if still held),
   calls the ESP, and commits "sent" (or "failed", or back to "queued" with a
   retry time) straight after the call, reconnecting if the database
   connection was lost meanwhile. A task that stops before calling the ESP
   hands its claim back at once.
3. `deliveries_sweep` (Celery beat) hands expired leases back: never
   dispatched → queued again; dispatched → ask the ESP whether it accepted
   the message (esp.accepted_message_id) and mark it sent or queue it again,
   or mark it "unknown" when the ESP cannot say. It also restarts sending
   for mailings whose workers went quiet, and finishes mailings with nothing
   left to do.

docs/sending.md explains the one window that remains.
"""

import contextlib
import functools
import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import get_connection
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db import connection as db
from django.db.models import F, Q
from django.utils import timezone

from mailings import emails, esp, throttle
from mailings.models import Delivery, Mailing

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 2
RETRY_MAX_SECONDS = 600
# A sending task waits for the ESP's pause (429, outage) or for retry times up
# to this far ahead by queueing its successor (Celery countdown) for then.
RETRY_WAIT_MAX_SECONDS = 300
HOLD_BACK_IN_TASK_SECONDS = 0.5
TASK_BUDGET_SECONDS = 60  # a sending task hands over to a fresh one after this long
# Pauses before writing again after the database connection was lost (a failover,
# a restarted proxy, an idle connection cut): about eight seconds in all.
RECONNECT_DELAYS = (0.1, 0.5, 2.0, 5.0)
SUPPORTER_FIELDS = (
    "supporter__id",
    "supporter__email",
    "supporter__first_name",
    "supporter__last_name",
    "supporter__postcode",
    "supporter__link_version",
)


def worker_name():
    """Name the claimant: this machine, process and thread (tasks may run in threads)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{threading.get_ident()}"[:100]


# -- 1. audience --------------------------------------------------------------------------


def mailing_resolve_audience(*, mailing: Mailing) -> int:
    """Create one queued Delivery per recipient in one statement; return how many exist.

    Call inside a transaction holding the mailing's row lock.
    """
    audience = mailing.audience().values("pk")
    if audience.query.is_empty():
        return Delivery.objects.filter(mailing=mailing).count()
    query, params = audience.query.sql_with_params()
    table = Delivery._meta.db_table
    # Columns without a database default must be listed; the rest are NULL.
    # The CTE names the audience's one column, whatever the ORM called it.
    sql = (
        f"WITH audience(supporter_id) AS ({query}) "  # noqa: S608 - SQL from the ORM
        f"INSERT INTO {table} "
        "(mailing_id, supporter_id, status, attempts, claimed_by, esp_message_id, error, "
        "created_at) "
        "SELECT %s, supporter_id, %s, 0, '', '', '', %s FROM audience WHERE true "
        "ON CONFLICT (mailing_id, supporter_id) DO NOTHING"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, mailing.pk, Delivery.Status.QUEUED, timezone.now()])
    return Delivery.objects.filter(mailing=mailing).count()


AUDIENCE_TABLES = ["crm_supporter", "crm_subscription", "crm_suppression", "crm_segmentmembership"]


def audience_tables_analyze():
    """ANALYZE the audience's tables if PostgreSQL has never gathered their statistics.

    Without statistics (autovacuum off, or a bulk load it has not caught up
    with) the planner guesses a handful of rows and may pick nested loops that
    run for minutes on 100,000 supporters. Cheap when there is nothing to do.
    """
    if db.vendor != "postgresql":
        return
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
            "AND last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 1000",
            [AUDIENCE_TABLES],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'ANALYZE "{table}"')


def deliveries_analyze():
    """Refresh PostgreSQL's statistics after a large audience was added.

    Autovacuum would get there eventually; the claims of the next minutes
    need a plan that knows the table just grew by 100,000 rows.
    """
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(f"ANALYZE {Delivery._meta.db_table}")


# -- 2. claiming and sending -------------------------------------------------------------


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
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(
                """
                UPDATE mailings_delivery SET status = %s, claimed_until = %s, claimed_by = %s,
                       attempts = attempts + 1, dispatched_at = NULL
                WHERE id IN (
                    SELECT d.id FROM mailings_delivery d
                    WHERE d.mailing_id = %s AND d.status = %s
                      AND (d.retry_at IS NULL OR d.retry_at <= %s)
                      AND EXISTS (SELECT 1 FROM mailings_mailing m
                                  WHERE m.id = d.mailing_id AND m.status = %s)
                    ORDER BY d.id LIMIT %s FOR UPDATE SKIP LOCKED)
                RETURNING id
                """,
                [
                    Delivery.Status.SENDING,
                    until,
                    worker,
                    mailing_id,
                    Delivery.Status.QUEUED,
                    now,
                    sending,
                    limit,
                ],
            )
            ids = sorted(row[0] for row in cursor.fetchall())
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
        _local.connection = cached = (key, connection)
    return cached[1]


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


def deliveries_send(*, mailing: Mailing, ids: list[int]) -> None:
    """Send the claimed deliveries `ids` and record each result."""
    rows = list(
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.SENDING)
        .select_related("supporter")
        .only("id", "attempts", "supporter_id", *SUPPORTER_FIELDS)
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
    try:
        prepared = emails.prepare(mailing)
    except Exception as error:
        _stop_mailing(mailing, rows, f"The newsletter could not be rendered: {error}")
        return
    key = _backend_key()
    syntax = esp.batch_syntax(_connection(key)) if settings.RALLY_BATCH_SEND else None
    if syntax:
        limit = min(settings.RALLY_SEND_BATCH_SIZE, esp.BATCH_LIMIT.get(_esp_name(key), 500))
        for start in range(0, len(rows), limit):
            _send_batch(mailing, prepared, rows[start : start + limit], key, syntax)
    else:
        _send_individually(mailing, prepared, rows, key)


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
    table = Delivery._meta.db_table
    ids = ", ".join(["%s"] * len(rows))
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET dispatched_at = %s, claimed_until = %s "  # noqa: S608
            f"WHERE id IN ({ids}) AND status = %s AND claimed_by = %s AND claimed_until > %s "
            "RETURNING id",
            [now, until, *(row.pk for row in rows), Delivery.Status.SENDING, worker_name(), now],
        )
        held = {pk for (pk,) in cursor.fetchall()}
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
    values = ", ".join(["(CAST(%s AS BIGINT), %s)"] * len(pairs))
    params = [value for row, message_id in pairs for value in (row.pk, str(message_id)[:255])]
    table = Delivery._meta.db_table
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, sent_at = %s, claimed_until = NULL, "  # noqa: S608
            "retry_at = NULL, error = '', esp_message_id = v.column2 "
            f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1",
            [Delivery.Status.SENT, now, *params],
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


def mailing_finish_if_done(*, mailing_id: int) -> bool:
    """Mark a sending mailing sent once no delivery is queued or in flight."""
    if Delivery.objects.filter(mailing_id=mailing_id).unfinished().exists():
        return False
    return bool(
        Mailing.objects.filter(
            pk=mailing_id, status=Mailing.Status.SENDING, recipient_count__isnull=False
        ).update(status=Mailing.Status.SENT, finished_at=timezone.now())
    )


# -- 3. the sweeper -----------------------------------------------------------------------


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
    done = {"recovered": 0, "restarted": [], "resolved": [], "finished": []}
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
        if quiet and Delivery.objects.filter(mailing=mailing).claimable(now).exists():
            mailing_enqueue_senders(mailing=mailing)
            done["restarted"].append(mailing.pk)
    return done


def mailing_enqueue_senders(*, mailing: Mailing) -> None:
    """Start RALLY_SEND_TASKS sending tasks for `mailing` once the transaction commits."""
    from mailings import tasks

    for _ in range(max(1, settings.RALLY_SEND_TASKS)):
        tasks.send_mailing_batches.delay_on_commit(mailing.pk)
