"""Tracking events give the same result in whatever order, batches and repeats they arrive."""

import itertools
import json
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.models import ConsentRecord, Supporter, Suppression
from mailings import tracking
from mailings.models import Delivery
from tests.factories import DeliveryFactory, SupporterFactory
from tests.mailings.test_tracking_webhooks import AUTH

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "rally:webhook-secret"}


@pytest.fixture
def delivery(newsletter, interest):
    reader = SupporterFactory(email="john@example.com", subscribed_to=[interest])
    return DeliveryFactory(
        mailing=newsletter, supporter=reader, status=Delivery.Status.SENT, esp_message_id="m-1"
    )


def moment(hour):
    return datetime(2026, 11, 5, hour, tzinfo=UTC)


def postmark_event(delivery, kind, hour):
    """Postmark's JSON for `kind` ("delivered", "opened", "bounced", …) at `hour` o'clock."""
    stamp = moment(hour).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {
        "MessageID": delivery.esp_message_id,
        "Recipient": "john@example.com",
        "Email": "john@example.com",
        "MessageStream": "broadcast",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }
    if kind == "delivered":
        return {"RecordType": "Delivery", "DeliveredAt": stamp, **common}
    if kind == "opened":
        return {"RecordType": "Open", "ReceivedAt": stamp, **common}
    if kind == "clicked":
        return {
            "RecordType": "Click",
            "ReceivedAt": stamp,
            "OriginalLink": "https://example.org/strategy",
            **common,
        }
    if kind == "unsubscribed":
        return {
            "RecordType": "SubscriptionChange",
            "ChangedAt": stamp,
            "SuppressSending": True,
            **common,
        }
    bounce = {"bounced": "HardBounce", "soft": "SoftBounce", "complained": "SpamComplaint"}[kind]
    return {
        "RecordType": "SpamComplaint" if kind == "complained" else "Bounce",
        "ID": hour * 100 + len(kind),
        "Type": bounce,
        "BouncedAt": stamp,
        **common,
    }


def post(client, delivery, kind, hour):
    response = client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(postmark_event(delivery, kind, hour)),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 200


def outcome(delivery):
    """What the events left: the delivery's times, the supporter's status, the stops written."""
    delivery.refresh_from_db()
    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    return {
        "delivered_at": delivery.delivered_at,
        "bounced_at": delivery.bounced_at,
        "deferred_at": delivery.deferred_at,
        "complained_at": delivery.complained_at,
        "opened_at": delivery.opened_at,
        "last_opened_at": delivery.last_opened_at,
        "clicked_at": delivery.clicked_at,
        "status": supporter.status,
        "suppressions": Suppression.objects.filter(email_hash=supporter.email_hash).count(),
        "withdrawals": ConsentRecord.objects.filter(
            supporter=supporter, action="withdrawn"
        ).count(),
    }


STORY = [("delivered", 9), ("opened", 10), ("bounced", 11), ("opened", 14)]


@pytest.mark.parametrize("order", list(itertools.permutations(STORY)), ids=str)
@pytest.mark.parametrize("apply_each", [True, False], ids=["applied-one-by-one", "one-batch"])
def test_late_delivered_or_opened_never_undoes_a_bounce(client, delivery, order, apply_each):
    for kind, hour in order:
        post(client, delivery, kind, hour)
        if apply_each:
            tracking.delivery_events_apply_pending()
    tracking.delivery_events_apply_pending()

    assert outcome(delivery) == {
        "delivered_at": moment(9),
        "bounced_at": moment(11),
        "deferred_at": None,
        "complained_at": None,
        "opened_at": moment(10),
        "last_opened_at": moment(14),
        "clicked_at": None,
        "status": Supporter.Status.BOUNCED,
        "suppressions": 1,
        "withdrawals": 1,
    }


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(["bounced", "complained", "unsubscribed"])),
    ids=lambda order: " then ".join(order),
)
def test_the_strongest_no_stands_whatever_the_order(client, delivery, order):
    """A complaint outranks a bounce, which outranks an unsubscribe at the ESP."""
    for hour, kind in enumerate(order, start=9):
        post(client, delivery, kind, hour)
        tracking.delivery_events_apply_pending()

    result = outcome(delivery)
    assert (result["status"], result["suppressions"], result["withdrawals"]) == (
        Supporter.Status.COMPLAINED,
        1,
        1,
    )
    first_method = {"bounced": "bounce", "complained": "complaint"}.get(order[0], "esp_unsubscribe")
    assert ConsentRecord.objects.get(action="withdrawn").method == first_method


KINDS = ["delivered", "opened", "clicked", "soft", "bounced", "complained", "unsubscribed"]
RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3}
FIRST = {
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "soft": "deferred_at",
    "bounced": "bounced_at",
    "complained": "complained_at",
}
CLIENT = Client()

events = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(min_value=0, max_value=23)),
    min_size=1,
    max_size=8,
    unique=True,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    story=events,
    shuffled=st.randoms(use_true_random=False),
    repeats=st.lists(st.integers(min_value=0, max_value=7), max_size=4),
    cuts=st.sets(st.integers(min_value=1, max_value=11), max_size=3),
)
def test_any_order_batches_and_repeats_give_the_same_outcome(
    delivery, story, shuffled, repeats, cuts
):
    """Shuffled, repeated and applied in arbitrary batches, events leave what they say."""
    arrivals = story + [story[n % len(story)] for n in repeats]
    shuffled.shuffle(arrivals)
    with transaction.atomic():
        for n, (kind, hour) in enumerate(arrivals):
            post(CLIENT, delivery, kind, hour)
            if n + 1 in cuts:
                tracking.delivery_events_apply_pending()
        tracking.delivery_events_apply_pending()

        result = outcome(delivery)
        for kind, column in FIRST.items():
            hours = [hour for k, hour in story if k == kind]
            assert result[column] == (moment(min(hours)) if hours else None), column
        opens = [hour for kind, hour in story if kind == "opened"]
        assert result["last_opened_at"] == (moment(max(opens)) if opens else None)
        stops = [kind for kind, _ in story if kind in RANK]
        assert result["status"] == (max(stops, key=RANK.get) if stops else "active")
        assert result["suppressions"] == result["withdrawals"] == (1 if stops else 0)
        transaction.set_rollback(True)
