"""The outbox: every consent change, by any route, becomes one delivery per listening endpoint."""

import datetime
import json

import pytest
from django.db.models import QuerySet
from django.utils import timezone

from crm.models import ConsentRecord
from crm.services import (
    consent_grant,
    supporter_erase,
    supporter_mark_undeliverable,
    supporter_unsubscribe,
)
from project.api import webhooks
from project.api.models import Event, WebhookDelivery, WebhookEndpoint
from project.api.webhooks import webhook_endpoint_create
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


def _events(endpoint):
    return list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .order_by("pk")
        .values_list("event", "supporter_id", "data")
    )


def test_each_kind_of_consent_change_becomes_its_event(
    supporter, endpoint, interest, other_interest
):
    """Subscribe, leave one interest, leave everything, bounce, complain and erasure each map."""
    bounced = SupporterFactory(email="bounce@example.org", subscribed_to=[interest])
    complained = SupporterFactory(email="spam@example.org", subscribed_to=[interest])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(created_at=timezone.now())

    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    supporter_unsubscribe(supporter=supporter, interest=interest, method="email_link")
    supporter_unsubscribe(supporter=supporter, method="email_link")
    supporter_mark_undeliverable(supporter=bounced, status="bounced", method="bounce")
    supporter_mark_undeliverable(supporter=complained, status="complained", method="complaint")
    supporter_erase(supporter=complained, actor=None)
    webhooks.webhooks_fan_out()

    assert _events(endpoint) == [
        (Event.SUBSCRIBED, supporter.pk, {"interest": "events"}),
        (Event.WITHDREW, supporter.pk, {"interest": "r2p"}),
        (Event.UNSUBSCRIBED_ALL, supporter.pk, {"interest": None}),
        (Event.BOUNCED, bounced.pk, {"interest": None}),
        # The complaint's consent record went with the erasure; the erasure is told.
        (Event.ERASED, complained.pk, {}),
    ]


def test_fan_out_twice_creates_each_delivery_once(supporter, endpoint, other_interest):
    """Reads overlap (LOOKBACK) so late commits are caught; nothing is delivered twice."""
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    first = webhooks.webhooks_fan_out()
    second = webhooks.webhooks_fan_out()
    assert (first, second) == (1, 0)


def test_a_change_committed_late_is_still_found(supporter, endpoint, other_interest):
    """A record dated before the last read (its transaction committed after it) is not missed."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=1)
    )
    webhooks.webhooks_fan_out()
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    record = ConsentRecord.objects.filter(pk=ConsentRecord.objects.latest("pk").pk)
    # Dated a minute before the last read, as a long transaction's rows are.
    QuerySet.update(record, created_at=timezone.now() - datetime.timedelta(minutes=1))

    assert webhooks.webhooks_fan_out() == 1


def test_endpoint_hears_only_the_events_it_chose(supporter, receiver, interest, other_interest):
    """An endpoint for unsubscribes gets no subscriptions."""
    leaving = webhook_endpoint_create(
        name="Leavers", url=receiver.url, events=[Event.UNSUBSCRIBED_ALL, Event.WITHDREW]
    )
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    supporter_unsubscribe(supporter=supporter, method="email_link")
    webhooks.webhooks_fan_out()
    assert [event for event, _, _ in _events(leaving)] == [Event.UNSUBSCRIBED_ALL]


def test_partner_endpoint_hears_only_of_its_own_supporters(
    receiver, partner, interest, other_interest
):
    """A partner's endpoint hears of those who came from the partner, nobody else."""
    theirs = SupporterFactory(email="theirs@example.org", partner=partner)
    ours = SupporterFactory(email="ours@example.org")
    hook = webhook_endpoint_create(
        name="Waging Peace CRM", url=receiver.url, events=[Event.SUBSCRIBED], partner=partner
    )
    for person in (theirs, ours):
        consent_grant(supporter=person, interest=interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    assert [supporter_id for _, supporter_id, _ in _events(hook)] == [theirs.pk]


def test_erased_supporter_is_named_by_id_only(supporter, endpoint, receiver, other_interest):
    """A delivery for someone erased since carries no email address."""
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    delivery = WebhookDelivery.objects.get(event=Event.SUBSCRIBED)
    supporter_erase(supporter=supporter, actor=None)

    webhooks.webhook_deliver(delivery_id=delivery.pk)

    ((_, body),) = receiver.requests
    assert json.loads(body)["data"]["supporter"] == {"id": supporter.pk}
    assert b"alice" not in body


def test_events_before_an_endpoint_existed_are_not_sent(supporter, receiver, other_interest):
    """A new endpoint starts with what happens after it is made."""
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    hook = webhook_endpoint_create(name="New", url=receiver.url, events=[Event.SUBSCRIBED])
    webhooks.webhooks_fan_out()
    assert _events(hook) == []
