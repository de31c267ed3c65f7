"""
Outbound webhooks: an outbox read from the consent records and the audit
trail, turned into one delivery row per event and endpoint, each sent signed
until the endpoint answers 2xx or RALLY_WEBHOOK_RETRY_HOURS have passed.

Every change of consent writes its ConsentRecord (and an AuditEvent) in the
transaction that makes it, so reading them misses no route into the system:
a staff action, an import, a supporter's click and an ESP's bounce all show.
Signatures are read from the actions' own table, where each is written once.

    webhook_endpoint_create()  a new endpoint with its signing secret
    webhooks_fan_out()   beat: new events since the last read -> WebhookDelivery rows
    webhook_deliver()    a worker: claim one delivery, POST it, record the outcome
    webhooks_due()       beat: the deliveries whose retry time has come (or whose worker died)
    webhook_endpoint_resume()  staff: start a paused endpoint again

A delivery is claimed by a conditional UPDATE, so a repeated task sends
nothing twice at once; its event id is the Idempotency-Key of every attempt,
for the receiver to drop what it already has (a delivery whose answer was
lost is sent again).
"""

import datetime
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from crm.exports import partner_opt_ins
from crm.models import AuditEvent, ConsentRecord, Supporter
from mailings.actions.models import Signature
from project.api import outbound
from project.api.models import Event, WebhookCursor, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Rally-Signature"
# Consent records are dated when written, and their transaction may commit a
# little later: each read goes back this far, and the unique (endpoint,
# event id) constraint drops what was already turned into deliveries.
LOOKBACK = datetime.timedelta(minutes=10)
FIRST_RETRY_SECONDS = 30
LONGEST_WAIT_SECONDS = 3600
KEEP_DELIVERED_DAYS = 30
CHUNK = 2000


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the Rally-Signature header for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def webhook_endpoint_create(*, name, url, events, partner=None, created_by=None):
    """Create an endpoint with a fresh signing secret."""
    return WebhookEndpoint.objects.create(
        name=name,
        url=url,
        events=sorted(set(events)),
        partner=partner,
        secret=secrets.token_hex(32),
        created_by=created_by,
    )


def webhook_endpoint_new_secret(*, endpoint):
    """Give `endpoint` a new signing secret (the old one stops verifying at once)."""
    endpoint.secret = secrets.token_hex(32)
    endpoint.save(update_fields=["secret"])
    return endpoint


def webhook_endpoint_resume(*, endpoint):
    """Start a paused endpoint again: its waiting deliveries are tried at once."""
    now = timezone.now()
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            paused_at=None, consecutive_failures=0
        )
        WebhookDelivery.objects.filter(
            endpoint=endpoint, status=WebhookDelivery.Status.PENDING
        ).update(next_attempt_at=now)


@dataclass(frozen=True)
class _Happened:
    event_id: str
    event: str
    supporter_id: int | None
    occurred_at: datetime.datetime
    data: dict


def _consent_event(action, method, interest_id):
    if action == ConsentRecord.Action.GRANTED:
        return Event.SUBSCRIBED
    if method == ConsentRecord.Method.BOUNCE:
        return Event.BOUNCED
    if method == ConsentRecord.Method.COMPLAINT:
        return Event.COMPLAINED
    return Event.UNSUBSCRIBED_ALL if interest_id is None else Event.WITHDREW


def _events_since(since, wanted):
    """Yield what happened since `since` that some endpoint listens for."""
    consent_events = wanted & {
        Event.SUBSCRIBED,
        Event.WITHDREW,
        Event.UNSUBSCRIBED_ALL,
        Event.BOUNCED,
        Event.COMPLAINED,
    }
    if consent_events:
        records = ConsentRecord.objects.filter(created_at__gte=since)
        if consent_events == {Event.SUBSCRIBED}:
            records = records.filter(action=ConsentRecord.Action.GRANTED)
        elif Event.SUBSCRIBED not in consent_events:
            records = records.filter(action=ConsentRecord.Action.WITHDRAWN)
        rows = records.order_by("pk").values_list(
            "pk", "supporter_id", "interest__slug", "interest_id", "action", "method", "created_at"
        )
        for pk, supporter_id, slug, interest_id, action, method, created_at in rows.iterator(
            chunk_size=CHUNK
        ):
            event = _consent_event(action, method, interest_id)
            if event in consent_events:
                yield _Happened(
                    f"consent-{pk}", event, supporter_id, created_at, {"interest": slug}
                )
    if Event.SIGNED in wanted:
        signed = Signature.objects.filter(created_at__gte=since).order_by("pk")
        for pk, supporter_id, slug, source, created_at in signed.values_list(
            "pk", "supporter_id", "action__slug", "source", "created_at"
        ).iterator(chunk_size=CHUNK):
            data = {"action": slug, "source": source}
            yield _Happened(f"signature-{pk}", Event.SIGNED, supporter_id, created_at, data)
    if Event.ERASED in wanted:
        erased = AuditEvent.objects.filter(created_at__gte=since, kind=AuditEvent.Kind.ERASED)
        for pk, supporter_id, created_at in erased.values_list("pk", "supporter_id", "created_at"):
            yield _Happened(f"erased-{pk}", Event.ERASED, supporter_id, created_at, {})


def _partner_people(partner, ids):
    """Return which of supporter `ids` the partner may hear of (erased ones included).

    Those who came from the partner (first, or in its lists) and those whose
    latest answer to the partner's box on an action page is yes: what its
    sync export carries. Signing from a partner's page is not a yes to it.
    """
    shared = ConsentRecord.objects.filter(supporter=OuterRef("pk"), partner=partner)
    found = set(partner_opt_ins(partner)) & set(ids)
    for start in range(0, len(ids), CHUNK):
        found.update(
            Supporter.objects.filter(pk__in=ids[start : start + CHUNK])
            .filter(Q(partner=partner) | Exists(shared))
            .values_list("pk", flat=True)
        )
    return found


def webhooks_fan_out(*, now=None) -> int:
    """Turn what happened since the last read into deliveries for each listening endpoint.

    Return how many deliveries were created. Safe to run twice at once: the
    cursor row is locked, and a delivery is unique per endpoint and event.
    """
    now = now or timezone.now()
    with transaction.atomic():
        cursor, _ = WebhookCursor.objects.select_for_update().get_or_create(
            pk=1, defaults={"scanned_until": now}
        )
        endpoints = list(WebhookEndpoint.objects.filter(is_active=True).exclude(events=[]))
        created = 0
        if endpoints:
            since = min(cursor.scanned_until, now) - LOOKBACK
            wanted = {event for endpoint in endpoints for event in endpoint.events}
            happened = list(_events_since(since, wanted))
            for endpoint in endpoints:
                created += _fan_out_to(endpoint, happened, now)
        cursor.scanned_until = now
        cursor.save(update_fields=["scanned_until"])
    return created


def _fan_out_to(endpoint, happened, now):
    mine = [
        item
        for item in happened
        if item.event in endpoint.events and item.occurred_at >= endpoint.created_at
    ]
    if endpoint.partner_id and mine:
        ids = sorted({item.supporter_id for item in mine if item.supporter_id})
        theirs = _partner_people(endpoint.partner, ids)
        mine = [item for item in mine if item.supporter_id in theirs]
    created = 0
    for start in range(0, len(mine), CHUNK):
        chunk = mine[start : start + CHUNK]
        known = set(
            WebhookDelivery.objects.filter(
                endpoint=endpoint, event_id__in=[item.event_id for item in chunk]
            ).values_list("event_id", flat=True)
        )
        fresh = [
            WebhookDelivery(
                endpoint=endpoint,
                event=item.event,
                event_id=item.event_id,
                supporter_id=item.supporter_id,
                data=item.data,
                occurred_at=item.occurred_at,
                next_attempt_at=now,
                created_at=now,
            )
            for item in chunk
            if item.event_id not in known
        ]
        WebhookDelivery.objects.bulk_create(fresh, ignore_conflicts=True)
        created += len(fresh)
    return created


def webhooks_due(*, now=None, limit=1000) -> list[int]:
    """Return the ids of deliveries to send now (pending and due, or stuck sending)."""
    return list(
        WebhookDelivery.objects.due(now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def webhooks_forget_delivered(*, now=None) -> int:
    """Delete deliveries delivered more than KEEP_DELIVERED_DAYS ago; return how many."""
    now = now or timezone.now()
    old = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.DELIVERED,
        delivered_at__lt=now - datetime.timedelta(days=KEEP_DELIVERED_DAYS),
    )
    return old._raw_delete(old.db)


def body_for(delivery) -> bytes:
    """Return the JSON body of `delivery`, built from the supporter as they are now.

    An erased supporter, or one deleted since, is named by id only.
    """
    person = {"id": delivery.supporter_id}
    if delivery.event != Event.ERASED and delivery.supporter_id:
        supporter = (
            Supporter.objects.filter(pk=delivery.supporter_id)
            .exclude(status=Supporter.Status.ERASED)
            .values("email", "status")
            .first()
        )
        if supporter:
            person.update(supporter)
    payload = {
        "id": delivery.event_id,
        "type": delivery.event,
        "occurred_at": delivery.occurred_at.isoformat(),
        "data": {"supporter": person, **delivery.data},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _wait(attempts):
    """Seconds before the next attempt after `attempts` failed ones: 30 s doubling to an hour."""
    seconds = min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), LONGEST_WAIT_SECONDS)
    return seconds * random.uniform(1.0, 1.1)


def webhook_deliver(*, delivery_id, now=None) -> str | None:
    """Send one delivery if it is due and nobody else has it; return its new status.

    Return None when there was nothing to do (already sent, not due, another
    worker has it, or its endpoint is paused).
    """
    now = now or timezone.now()
    lease = now + datetime.timedelta(seconds=settings.RALLY_WEBHOOK_TIMEOUT * 3 + 30)
    listening = WebhookEndpoint.objects.filter(
        deliveries=delivery_id, is_active=True, paused_at__isnull=True
    ).exists()
    claimed = listening and (
        WebhookDelivery.objects.claimable(now)
        .filter(pk=delivery_id)
        .update(
            status=WebhookDelivery.Status.SENDING, claimed_until=lease, attempts=F("attempts") + 1
        )
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = body_for(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Rally-Webhooks/1",
        "Rally-Event": delivery.event,
        "Rally-Delivery": str(delivery.pk),
        "Idempotency-Key": delivery.event_id,
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
    }
    status_code, error = None, ""
    try:
        answer = outbound.post(endpoint.url, body, headers)
        status_code = answer.status
        if not 200 <= answer.status < 300:
            error = f"HTTP {answer.status}: {answer.body[:200]}".strip()
    except outbound.Refused as refusal:
        error = str(refusal)
    except OSError as failure:
        error = f"could not deliver: {failure}"[:500]
    return _record(delivery, endpoint, status_code, error)


def _record(delivery, endpoint, status_code, error):
    now = timezone.now()
    fields = {"last_status_code": status_code, "last_error": error[:500], "claimed_until": None}
    with transaction.atomic():
        if not error:
            status = WebhookDelivery.Status.DELIVERED
            fields.update(status=status, delivered_at=now)
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=0, last_success_at=now
            )
        else:
            age = now - delivery.created_at
            if age >= datetime.timedelta(hours=settings.RALLY_WEBHOOK_RETRY_HOURS):
                status = WebhookDelivery.Status.FAILED
            else:
                status = WebhookDelivery.Status.PENDING
                fields["next_attempt_at"] = now + datetime.timedelta(
                    seconds=_wait(delivery.attempts)
                )
            fields["status"] = status
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
            )
            _pause_if_failing(endpoint, now)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    if error:
        logger.warning(
            "Webhook delivery %s to endpoint %s failed (attempt %s): %s",
            delivery.pk,
            endpoint.pk,
            delivery.attempts,
            error,
        )
    return status


def _pause_if_failing(endpoint, now):
    """Pause `endpoint` once RALLY_WEBHOOK_PAUSE_AFTER attempts in a row have failed."""
    paused = WebhookEndpoint.objects.filter(
        pk=endpoint.pk,
        paused_at__isnull=True,
        consecutive_failures__gte=settings.RALLY_WEBHOOK_PAUSE_AFTER,
    ).update(paused_at=now)
    if paused:
        logger.warning("Webhook endpoint %s paused after repeated failures", endpoint.pk)
        transaction.on_commit(lambda: _tell_staff(endpoint))


def _tell_staff(endpoint):
    """Email the superusers that `endpoint` was paused (it names no supporter)."""
    recipients = list(
        get_user_model()
        .objects.filter(is_superuser=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    # The pause is already recorded and shown in the admin; a mail failure must not undo it.
    try:
        _send_pause_notice(endpoint, recipients)
    except Exception:
        logger.exception("Could not email staff that webhook endpoint %s paused", endpoint.pk)


def _send_pause_notice(endpoint, recipients):
    send_mail(
        subject=f"Webhook endpoint paused: {endpoint.name}",
        message=(
            f"Rally stopped sending events to the webhook endpoint “{endpoint.name}” "
            f"({endpoint.url}) after {settings.RALLY_WEBHOOK_PAUSE_AFTER} failed attempts in a "
            "row. Its events are kept and wait for it.\n\n"
            f"See the last errors and resume it: {settings.SITE_URL}/admin/api/webhookendpoint/"
            f"{endpoint.pk}/change/\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
