"""Webhook deliveries: signed, retried with backoff for a day, paused after repeated failure."""

import datetime
import hashlib
import hmac
import json
import time

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from crm.services import consent_grant, supporter_unsubscribe
from project.api import webhooks
from project.api.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/api.md prints it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields["v1"])


def _one_delivery(endpoint, supporter, other_interest):
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    return WebhookDelivery.objects.get(endpoint=endpoint, event="supporter.subscribed")


def test_delivery_is_signed_and_verifies_with_the_documented_check(
    supporter, endpoint, receiver, other_interest
):
    """The receiver gets the event as JSON, and the documented ten lines verify its signature."""
    delivery = _one_delivery(endpoint, supporter, other_interest)

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "delivered"

    ((headers, body),) = receiver.requests
    assert verify(endpoint.secret, body, headers["Rally-Signature"]) is True
    assert verify("not-the-secret", body, headers["Rally-Signature"]) is False
    assert verify(endpoint.secret, body + b" ", headers["Rally-Signature"]) is False
    event = json.loads(body)
    assert event["type"] == "supporter.subscribed"
    assert event["data"] == {
        "supporter": {"id": supporter.pk, "email": "alice@example.org", "status": "active"},
        "interest": "events",
    }
    assert headers["Idempotency-Key"] == event["id"] == delivery.event_id
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert delivery.attempts == 1


def test_failed_delivery_is_retried_later_with_the_same_idempotency_key(
    supporter, endpoint, receiver, other_interest
):
    """A 500 leaves the delivery waiting with a growing wait; a retry carries the same key."""
    receiver.statuses = [500, 503, 200]
    delivery = _one_delivery(endpoint, supporter, other_interest)

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "pending"
    delivery.refresh_from_db()
    first_wait = delivery.next_attempt_at - timezone.now()
    assert datetime.timedelta(seconds=25) < first_wait < datetime.timedelta(seconds=40)
    assert delivery.last_error.startswith("HTTP 500")
    # Not due yet: a second task does nothing.
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) is None
    assert webhooks.webhooks_due() == []

    with time_machine.travel(delivery.next_attempt_at + datetime.timedelta(seconds=1)):
        assert webhooks.webhooks_due() == [delivery.pk]
        assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "pending"
        delivery.refresh_from_db()
        second_wait = delivery.next_attempt_at - timezone.now()
    assert second_wait > first_wait * 1.5

    with time_machine.travel(delivery.next_attempt_at + datetime.timedelta(seconds=1)):
        assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "delivered"

    keys = {headers["Idempotency-Key"] for headers, _ in receiver.requests}
    assert keys == {delivery.event_id}
    assert len(receiver.requests) == 3
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 3


def test_delivery_gives_up_after_a_day(supporter, endpoint, receiver, other_interest):
    """Past RALLY_WEBHOOK_RETRY_HOURS a failed attempt is the last one."""
    receiver.statuses = [500]
    delivery = _one_delivery(endpoint, supporter, other_interest)
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=24, minutes=1)):
        assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "failed"
        assert webhooks.webhooks_due() == []


def test_endpoint_is_paused_after_repeated_failures_and_staff_are_told(
    settings,
    supporter,
    endpoint,
    receiver,
    interest,
    other_interest,
    superuser,
    django_capture_on_commit_callbacks,
):
    """After RALLY_WEBHOOK_PAUSE_AFTER failures in a row nothing more is sent until resumed."""
    settings.RALLY_WEBHOOK_PAUSE_AFTER = 3
    receiver.statuses = [500] * 10
    supporter_unsubscribe(supporter=supporter, interest=interest, method="email_link")
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    supporter_unsubscribe(supporter=supporter, interest=other_interest, method="email_link")
    consent_grant(supporter=supporter, interest=interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    ids = list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == 4

    with django_capture_on_commit_callbacks(execute=True):
        for delivery_id in ids[:3]:
            webhooks.webhook_deliver(delivery_id=delivery_id)
    endpoint.refresh_from_db()
    assert endpoint.is_paused is True
    assert webhooks.webhook_deliver(delivery_id=ids[3]) is None
    assert len(receiver.requests) == 3
    assert webhooks.webhooks_due(now=timezone.now() + datetime.timedelta(hours=2)) == []
    assert [message.subject for message in mail.outbox] == [
        "Webhook endpoint paused: Campaign tools"
    ]
    assert "alice" not in mail.outbox[0].body

    receiver.statuses = []
    webhooks.webhook_endpoint_resume(endpoint=endpoint)
    assert sorted(webhooks.webhooks_due()) == sorted(ids)
    for delivery_id in ids:
        webhooks.webhook_deliver(delivery_id=delivery_id)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_delivery_is_claimed_once(supporter, endpoint, receiver, other_interest):
    """A second task for a delivery already sent sends nothing."""
    delivery = _one_delivery(endpoint, supporter, other_interest)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 1
