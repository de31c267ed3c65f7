"""
Tracking events from the ESPs' webhooks: recorded by the request, applied by a worker.

An ESP posts either one event per request (Postmark, Mailgun, Brevo, Resend,
Postal, MailerSend) or batches of up to hundreds or thousands (SendGrid,
Mailjet with grouped events, SparkPost, Mandrill, Mailtrap, Unisender Go),
and retries anything but a 2xx for hours. So the request does as little as
it can, and the rest happens in batches:

1. **Record** (in the webhook request): the events of one request are matched
   to their deliveries by one query and written by one
   `INSERT … ON CONFLICT DO NOTHING` into DeliveryEvent, unique on (ESP, event
   id), marked `pending`. A duplicate or a retried webhook changes nothing.
2. **Apply** (`mailings.tasks.apply_tracking_events`, on the "webhooks" queue):
   queued when events arrive (at most one waiting at a time) and every
   RALLY_TRACKING_APPLY_SECONDS by beat, it takes pending events oldest first
   (`FOR UPDATE SKIP LOCKED`, so several workers can share the work), applies
   a batch's delivery timestamps in one transaction (one UPDATE per column),
   then stops mail to each supporter an event says must not be emailed again,
   one short transaction per supporter. An event stays pending until all it
   calls for is done.

Order never matters: first-time fields keep the earliest time and `last_*`
fields the latest, and a supporter's status only moves towards the strongest
"no" (crm.services.supporter_mark_undeliverable), so a late "delivered" or
"opened" never undoes a bounce, and a bounce after a complaint keeps the
complaint.
"""

import contextlib
import contextvars
import datetime
import hashlib
import logging
import time
from collections import defaultdict
from typing import NamedTuple
from urllib.parse import urlsplit

from django.core.cache import cache
from django.db import InterfaceError, OperationalError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.models import ConsentRecord, Subscription, Supporter, Suppression, email_hash
from crm.services import UNDELIVERABLE_RANK, supporter_mark_undeliverable
from mailings import sql
from mailings.models import Delivery, DeliveryEvent, Mailing

logger = logging.getLogger(__name__)

# Anymail's normalised event → the Delivery timestamps it sets: (first, latest).
EVENT_FIELDS = {
    "delivered": ("delivered_at", None),
    "deferred": ("deferred_at", None),
    "bounced": ("bounced_at", None),
    "rejected": ("rejected_at", None),
    "failed": ("rejected_at", None),
    "complained": ("complained_at", None),
    "unsubscribed": ("unsubscribed_at", None),
    "opened": ("opened_at", "last_opened_at"),
    "clicked": ("clicked_at", "last_clicked_at"),
}
TRACKED_COLUMNS = sorted({column for pair in EVENT_FIELDS.values() for column in pair if column})
# Events that do not prove the ESP accepted the message.
UNPROVEN = {"queued", "rejected", "failed", "unknown"}

# Events that mean "never email this address again": the supporter status to
# set and the consent method to record. Complaints and ESP-side unsubscribes
# withdraw consent for everything, as a hard bounce does.
UNDELIVERABLE = {
    "bounced": (Supporter.Status.BOUNCED, ConsentRecord.Method.BOUNCE),
    "complained": (Supporter.Status.COMPLAINED, ConsentRecord.Method.COMPLAINT),
    "unsubscribed": (Supporter.Status.UNSUBSCRIBED, ConsentRecord.Method.ESP_UNSUBSCRIBE),
}
# A "rejected" event names why the ESP refused; these reasons mirror its own suppression.
REJECTED_BECAUSE = {"bounced": "bounced", "spam": "complained", "unsubscribed": "unsubscribed"}

# Bounces Anymail reports as "bounced" that are temporary (the mailbox is full,
# the receiving server blocked the sending IP…): they only defer. Each ESP says
# so in its own field of the raw event.
POSTMARK_SOFT = {
    "SoftBounce",
    "Transient",
    "DnsError",
    "AutoResponder",
    "VirusNotification",
    "ChallengeVerification",
}
SPARKPOST_HARD = {"10", "30"}  # invalid recipient; no such recipient


def _sparkpost_bounce_class(raw):
    (event,) = raw["msys"].values()
    return str(event["bounce_class"])


SOFT_BOUNCES = {
    "Postmark": lambda raw: raw["Type"] in POSTMARK_SOFT,
    "SendGrid": lambda raw: raw["type"] == "blocked",
    "Mailjet": lambda raw: raw["hard_bounce"] is False,
    "SparkPost": lambda raw: _sparkpost_bounce_class(raw) not in SPARKPOST_HARD,
    "Amazon SES": lambda raw: raw["bounce"]["bounceType"] in ("Transient", "Undetermined"),
}

# Where the ESP's own id for an event is steadier than the one Anymail reports.
# Mailgun: Anymail gives the webhook signature's token, which changes if a
# retried webhook is signed afresh; the event's id is unique within a day, so
# with the event's time it is unique.
EVENT_IDS = {
    "Mailgun": lambda raw: "{id}@{timestamp}".format(**raw["event-data"]),
}

# Events applied per transaction.
APPLY_BATCH = 1000
# How long a queued apply task waits, gathering the events that follow.
APPLY_DELAY_SECONDS = 1
# The cache key that says an apply task is queued and has not started yet.
APPLY_QUEUED_KEY = "rally.tracking.apply-queued"
# Errors that pass (the database restarting, a deadlock): the events stay
# pending and the next run applies them.
TRANSIENT = (OperationalError, InterfaceError)
BIGINT_MAX = 2**63 - 1


# -- recording (the webhook request) ----------------------------------------------------------

_collecting = contextvars.ContextVar("rally_tracking_events", default=None)


@contextlib.contextmanager
def events_collected():
    """Gather the tracking events received inside the block; record them together at its end.

    Put around a webhook view, so that an ESP's batch of events costs one
    INSERT, not one per event. If the block raises, nothing is recorded and
    the error answers 500, so the ESP sends the batch again.
    """
    collected = []
    token = _collecting.set(collected)
    try:
        yield
    finally:
        _collecting.reset(token)
    by_esp = defaultdict(list)
    for esp_name, event in collected:
        by_esp[esp_name].append(event)
    for esp_name, events in by_esp.items():
        delivery_events_record(events=events, esp_name=esp_name)


def delivery_record_event(*, event, esp_name: str) -> None:
    """Record one normalised tracking event (at the end of events_collected(), if open)."""
    collected = _collecting.get()
    if collected is None:
        delivery_events_record(events=[event], esp_name=esp_name)
    else:
        collected.append((esp_name, event))


def delivery_events_record(*, events, esp_name: str) -> int:
    """Record Anymail tracking events from one ESP as pending; return how many are new.

    One INSERT … SELECT … ON CONFLICT DO NOTHING, joined to the deliveries,
    writes the events, so the ESP's retries and duplicates change nothing, and
    events that match no delivery (other mail on the same ESP account, test
    sends) are acknowledged and dropped. Raises only if the database fails, so
    that the ESP retries.
    """
    esp_name = esp_name[:32]
    deliveries = _delivery_ids(events)
    now = timezone.now()
    rows = {}
    for event, delivery_id in zip(events, deliveries, strict=True):
        if delivery_id is None:
            continue
        kind = _effective_type(event, esp_name)
        key = dedupe_key(event, delivery_id, esp_name)
        rows[key] = (
            delivery_id,
            esp_name,
            key,
            kind[:24],
            _aware(event.timestamp) or now,
            _web_link(event.click_url),
            _text(event.reject_reason or event.description, 255),
            _suppress_as(kind, event.reject_reason),
        )
    rows = list(rows.values())
    # A statement takes at most 65,535 parameters (PostgreSQL) or 32,766 (SQLite).
    recorded = sum(_insert(rows[n : n + 1000], now) for n in range(0, len(rows), 1000))
    if recorded:
        transaction.on_commit(delivery_events_apply_soon)
    if None in deliveries:
        # Not ours (another system's mail on the same ESP account) or a test send.
        logger.info(
            "%d of %d tracking events from %s name no delivery",
            deliveries.count(None),
            len(events),
            esp_name,
        )
    return recorded


INSERT_COLUMNS = (
    "delivery_id",
    "esp_name",
    "dedupe_key",
    "event_type",
    "timestamp",
    "url",
    "reason",
    "suppress_as",
)


def _insert(rows, now):
    """Insert event rows (INSERT_COLUMNS) whose delivery exists; return how many were new."""
    return sql.events_insert(rows, INSERT_COLUMNS, now=now)


def _delivery_ids(events):
    """Return the delivery id each event names (or None), in order.

    The delivery id travels in the message's metadata; without it (mail sent
    before metadata, an ESP that drops it), the ESP's message id and the
    recipient find it, in one query for the whole batch. An id in the metadata
    is checked by the INSERT's join.
    """
    ids = [_metadata_delivery_id(event) for event in events]
    wanted = {
        n: (str(event.message_id)[:255], email_hash(event.recipient))
        for n, event in enumerate(events)
        if ids[n] is None
        and event.message_id
        and event.recipient
        # Text no delivery can hold names none (and PostgreSQL refuses it in a query).
        and _storable(str(event.message_id))
        and _storable(event.recipient)
    }
    if wanted:
        found = {
            (message_id, hashed): pk
            for message_id, hashed, pk in Delivery.objects.filter(
                esp_message_id__in={message_id for message_id, _ in wanted.values()},
                supporter__email_hash__in={hashed for _, hashed in wanted.values()},
            ).values_list("esp_message_id", "supporter__email_hash", "pk")
        }
        for n, pair in wanted.items():
            ids[n] = found.get(pair)
    return ids


def _metadata_delivery_id(event):
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    raw = metadata.get("delivery_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit():
        # ASCII only: "²".isdigit() is true, and int("²") fails.
        value = int(raw)
    else:
        return None
    return value if 0 < value <= BIGINT_MAX else None


def dedupe_key(event, delivery_id, esp_name: str = "") -> str:
    """Return what identifies `event` among all of its ESP's events."""
    if esp_name in EVENT_IDS:
        try:
            return _text(str(EVENT_IDS[esp_name](event.esp_event)), 128)
        except (KeyError, TypeError, AttributeError):
            pass  # not the shape this table expects: Anymail's id below
    if event.event_id not in (None, ""):
        return _text(str(event.event_id), 128)
    # No id from the ESP (Postmark sends none for most events, Mailjet none at
    # all): what happened, to which delivery, when, identifies it, so a resent
    # webhook matches.
    parts = [
        str(delivery_id),
        str(event.message_id or ""),
        event.event_type,
        event.timestamp.isoformat() if event.timestamp else "",
        event.click_url or "",
    ]
    return "sha256:" + hashlib.sha256("|".join(parts).encode("utf-8", "replace")).hexdigest()


def _effective_type(event, esp_name):
    """Return the event type to record: a soft bounce counts as deferred, not bounced."""
    if event.event_type == "bounced" and esp_name in SOFT_BOUNCES:
        try:
            if SOFT_BOUNCES[esp_name](event.esp_event):
                return "deferred"
        except (KeyError, TypeError, AttributeError, ValueError):
            pass  # the field is missing: a hard bounce, as Anymail says
    return event.event_type or "unknown"


def _suppress_as(kind, reject_reason):
    """Return the UNDELIVERABLE key an event of `kind` calls for, or ""."""
    if kind == "rejected":
        kind = REJECTED_BECAUSE.get(reject_reason)
    return kind if kind in UNDELIVERABLE else ""


def _text(value, limit):
    # PostgreSQL text cannot hold NUL characters, nor a lone UTF-16 surrogate
    # (JSON's "\ud800"), which has no UTF-8 form; no ESP sends them on purpose.
    value = (value or "").replace("\x00", "")
    return value.encode("utf-8", "replace").decode("utf-8")[:limit]


def _web_link(url):
    """Return the clicked link if it is an http(s) URL, else "".

    The mailing report links to what is stored here, so a "javascript:" or
    "data:" link (from a forged event, or a newsletter that had one) must
    never be kept as a link.
    """
    url = _text(url, 2000)
    try:
        # urlsplit drops the tabs and newlines browsers ignore ("java\tscript:").
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" in the host
        return ""
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def _storable(value):
    return _text(value, len(value)) == value


def _aware(moment):
    if moment is None or timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, datetime.UTC)


def delivery_events_apply_soon() -> None:
    """Queue the apply task, unless one is already queued and has not started.

    The task starts APPLY_DELAY_SECONDS later, so that the events arriving
    meanwhile are applied together rather than a few per task. Never raises:
    the events are safe in the database, and beat's periodic run applies them
    if the broker cannot be reached now.
    """
    from mailings import tasks

    try:
        if cache.add(APPLY_QUEUED_KEY, 1, timeout=60):
            tasks.apply_tracking_events.apply_async(countdown=APPLY_DELAY_SECONDS)
    except Exception:
        logger.warning("Could not queue the tracking events task; beat will run it", exc_info=True)
        with contextlib.suppress(Exception):
            cache.delete(APPLY_QUEUED_KEY)


# -- applying (a worker on the "webhooks" queue) -----------------------------------------------


class PendingEvent(NamedTuple):
    id: int
    delivery_id: int
    mailing_id: int
    esp_name: str
    event_type: str
    timestamp: datetime.datetime
    suppress_as: str


def delivery_events_apply_pending(*, budget: float = 50.0) -> int:
    """Apply pending events in batches until none are left; return how many were applied.

    After `budget` seconds, queue a fresh run and return, so that no task
    runs for ever during a long storm.
    """
    # From now on an arriving event queues another run: none is lost between
    # this run's last look and its end.
    with contextlib.suppress(Exception):
        cache.delete(APPLY_QUEUED_KEY)
    started = time.monotonic()
    total = 0
    while True:
        applied = delivery_events_apply()
        total += applied
        if applied < APPLY_BATCH:
            return total
        if time.monotonic() - started > budget:
            delivery_events_apply_soon()
            return total


def delivery_events_apply(*, limit: int = APPLY_BATCH) -> int:
    """Apply up to `limit` pending events, oldest first; return how many were taken.

    In short transactions, so that no supporter stays locked for long: the
    deliveries' timestamps for the whole batch in one (which completes every
    event that stops no mail), then each supporter an event says is
    undeliverable in one of their own (which completes that supporter's
    events). An event stays pending until all it calls for is done, and doing
    it again changes nothing, so several workers can share the work and an
    interrupted run loses nothing. If the batch fails for a reason other than
    the database being unavailable, its events are applied one at a time, and
    one that still fails is logged and set aside, so a single bad event never
    holds up the others.
    """
    try:
        return _apply(limit=limit)
    except TRANSIENT:
        raise
    except Exception:
        logger.exception("A batch of tracking events failed; applying them one at a time")
    ids = list(
        DeliveryEvent.objects.filter(pending=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        try:
            _apply(limit=1, pk=pk)
        except TRANSIENT:
            raise
        except Exception as error:
            _set_aside([pk], error)
    return len(ids)


def _apply(*, limit, pk=None):
    with transaction.atomic():
        pending = DeliveryEvent.objects.filter(pending=True)
        if pk is not None:
            pending = pending.filter(pk=pk)
        events = [
            PendingEvent(*row)
            for row in pending.order_by("pk")
            .select_for_update(skip_locked=True)
            .values_list(*PendingEvent._fields)[:limit]
        ]
        if not events:
            return 0
        _apply_to_deliveries(events)
        DeliveryEvent.objects.filter(
            pk__in=[event.id for event in events if not event.suppress_as]
        ).update(pending=False)
    _apply_to_supporters([event for event in events if event.suppress_as])
    return len(events)


def _set_aside(ids, error):
    logger.error(
        "Tracking events %s could not be applied and are set aside (%s)",
        ", ".join(map(str, ids)),
        type(error).__name__,
        exc_info=True,
    )
    DeliveryEvent.objects.filter(pk__in=ids).update(pending=False)


def _apply_to_deliveries(events):
    """Move each delivery's timestamps to include `events`: one UPDATE per column."""
    # Rows locked in id order, so that two workers never wait on each other in
    # a circle; FOR NO KEY UPDATE, so that webhook requests inserting events
    # (which key-share-lock the deliveries they reference) never wait on them.
    current = {
        row[0]: dict(zip(["status", *TRACKED_COLUMNS], row[1:], strict=True))
        for row in Delivery.objects.filter(pk__in={event.delivery_id for event in events})
        .order_by("pk")
        .select_for_update(no_key=True)
        .values_list("pk", "status", *TRACKED_COLUMNS)
    }
    changes = defaultdict(dict)
    confirmed = set()
    for event in events:
        row = current.get(event.delivery_id)
        if row is None:
            continue
        first, latest = EVENT_FIELDS.get(event.event_type, (None, None))
        if first and (row[first] is None or event.timestamp < row[first]):
            row[first] = changes[first][event.delivery_id] = event.timestamp
        if latest and (row[latest] is None or event.timestamp > row[latest]):
            row[latest] = changes[latest][event.delivery_id] = event.timestamp
        if event.event_type not in UNPROVEN and row["status"] == Delivery.Status.UNKNOWN:
            # The ESP reports on it, so it had it: the worker died after all was well.
            confirmed.add(event.delivery_id)
    for column, values in changes.items():
        _update_column(column, values)
    if confirmed:
        Delivery.objects.filter(pk__in=confirmed, status=Delivery.Status.UNKNOWN).update(
            status=Delivery.Status.SENT, sent_at=Coalesce("sent_at", "dispatched_at"), error=""
        )


def _update_column(column, values):
    """Set `column` to each delivery's value in `values` ({id: datetime}), in one statement."""
    sql.deliveries_set_times(column, values)


def _apply_to_supporters(stops):
    """Stop all email to each supporter `stops` name, one short transaction per supporter."""
    if not stops:
        return
    owners = dict(
        Delivery.objects.filter(pk__in={event.delivery_id for event in stops}).values_list(
            "pk", "supporter_id"
        )
    )
    mailings = Mailing.objects.in_bulk({event.mailing_id for event in stops})
    by_supporter = defaultdict(list)
    for event in sorted(stops, key=lambda event: (event.timestamp, event.id)):
        by_supporter[owners.get(event.delivery_id)].append(event)
    for supporter_id, events in sorted(by_supporter.items(), key=lambda item: item[0] or 0):
        try:
            with transaction.atomic():
                _stop_supporter(supporter_id, events, mailings)
        except TRANSIENT:
            raise
        except Exception as error:
            _set_aside([event.id for event in events], error)


def _stop_supporter(supporter_id, events, mailings):
    supporter = Supporter.objects.select_for_update().filter(pk=supporter_id).first()
    # Events another worker has taken meanwhile (locked) or finished are its to do.
    mine = set(
        DeliveryEvent.objects.filter(pk__in=[event.id for event in events], pending=True)
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)
    )
    events = [event for event in events if event.id in mine]
    if supporter is not None and supporter.status != Supporter.Status.ERASED and events:
        # Whoever is already as stopped as an event asks (status at least as
        # strong, address suppressed, nothing subscribed) is left alone: a
        # repeated bounce costs no writes.
        stopped = (
            Suppression.objects.filter(email_hash=supporter.email_hash).exists()
            and not supporter.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).exists()
        )
        done = set()
        for event in events:
            status, method = UNDELIVERABLE[event.suppress_as]
            if event.suppress_as in done or (
                stopped
                and UNDELIVERABLE_RANK.get(supporter.status, 0) >= UNDELIVERABLE_RANK[status]
            ):
                continue
            done.add(event.suppress_as)
            supporter_mark_undeliverable(
                supporter=supporter,
                status=status,
                method=method,
                mailing=mailings.get(event.mailing_id),
                actor_label=f"{event.esp_name} webhook",
            )
            supporter.refresh_from_db(fields=["status"])
            stopped = True
    DeliveryEvent.objects.filter(pk__in=[event.id for event in events]).update(pending=False)
