"""ESPs that post many events per request (SendGrid, Mailjet, SparkPost): one INSERT a batch."""

import json

import pytest

from crm.models import Supporter, Suppression
from mailings import tracking
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, SupporterFactory
from tests.mailings.test_tracking_webhooks import AUTH

pytestmark = [
    pytest.mark.django_db,
    # Anymail still parses SendGrid's webhooks; it only warns that it no longer tests them.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

WHEN = 1762361634  # 2025-11-05 16:53:54 UTC


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "rally:webhook-secret"}


@pytest.fixture
def readers(newsletter, interest):
    """Five deliveries of the newsletter, by name: opener, bouncer, soft, complainer, quiet."""
    names = ["opener", "bouncer", "soft", "complainer", "quiet"]
    return {
        name: DeliveryFactory(
            mailing=newsletter,
            supporter=SupporterFactory(email=f"{name}@example.com", subscribed_to=[interest]),
            status=Delivery.Status.SENT,
            esp_message_id=f"message-{name}",
        )
        for name in names
    }


def sendgrid(readers):
    """SendGrid's event webhook: a JSON array, custom args beside SendGrid's own keys."""

    def event(name, kind, n, **extra):
        delivery = readers[name]
        return {
            "email": f"{name}@example.com",
            "timestamp": WHEN + n,
            "sg_event_id": f"sg-{name}-{n}",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "smtp-id": f"<{delivery.esp_message_id}@rally.example.org>",
            "category": ["newsletter"],
            "mailing_id": str(delivery.mailing_id),
            "delivery_id": str(delivery.pk),
            "event": kind,
            **extra,
        }

    return "/anymail/sendgrid/tracking/", [
        event("opener", "processed", 0),
        event("opener", "delivered", 1, response="250 OK"),
        event("opener", "open", 2, useragent="Mozilla/5.0", ip="203.0.113.9"),
        event("bouncer", "bounce", 3, type="bounce", reason="550 5.1.1 no such user"),
        event("soft", "bounce", 4, type="blocked", reason="421 4.7.0 IP blocked"),
        event("complainer", "spamreport", 5),
        {**event("quiet", "delivered", 6), "delivery_id": "999999999"},  # not ours
    ]


def mailjet(readers):
    """Mailjet's event webhook with "group events" on: a JSON array, metadata in Payload."""

    def event(name, kind, n, **extra):
        delivery = readers[name]
        return {
            "event": kind,
            "time": WHEN + n,
            "MessageID": 19421777835146490 + n,
            "email": f"{name}@example.com",
            "mj_campaign_id": 7257,
            "mj_contact_id": 4,
            "customcampaign": "newsletter",
            "Payload": json.dumps({"delivery_id": delivery.pk}),
            **extra,
        }

    return "/anymail/mailjet/tracking/", [
        event("opener", "sent", 1, smtp_reply="sent (250 2.0.0 OK)"),
        event("opener", "open", 2, ip="203.0.113.9", agent="Mozilla/5.0"),
        event("bouncer", "bounce", 3, hard_bounce=True, error="user unknown", blocked=False),
        event("soft", "bounce", 4, hard_bounce=False, error="quota exceeded", blocked=False),
        event("complainer", "spam", 5, source="JMRPP"),
        {**event("quiet", "sent", 6), "Payload": ""},  # not ours
    ]


def sparkpost(readers):
    """SparkPost's webhook: an array of {"msys": {<class>_event: {...}}}."""

    def event(group, name, kind, n, **extra):
        delivery = readers[name]
        return {
            "msys": {
                group: {
                    "type": kind,
                    "event_id": f"9208771546{n}",
                    "timestamp": str(WHEN + n),
                    "transmission_id": "65832150921904138",
                    "raw_rcpt_to": f"{name}@example.com",
                    "rcpt_to": f"{name}@example.com",
                    "campaign_id": "newsletter",
                    "rcpt_meta": {"delivery_id": str(delivery.pk)},
                    **extra,
                }
            }
        }

    return "/anymail/sparkpost/tracking/", [
        {"msys": {}},  # SparkPost's ping
        event("message_event", "opener", "injection", 0),
        event("message_event", "opener", "delivery", 1),
        event("track_event", "opener", "open", 2, user_agent="Mozilla/5.0"),
        event("message_event", "bouncer", "bounce", 3, bounce_class="10", raw_reason="550"),
        event("message_event", "soft", "bounce", 4, bounce_class="22", raw_reason="452 full"),
        event("message_event", "complainer", "spam_complaint", 5, fbtype="abuse"),
        event("message_event", "quiet", "delivery", 6, rcpt_meta={}),  # not ours
    ]


def status(delivery):
    return Supporter.objects.get(pk=delivery.supporter_id).status


@pytest.mark.parametrize("payload", [sendgrid, mailjet, sparkpost])
def test_a_batch_is_recorded_in_two_queries_at_most_and_applied_whole(
    client, readers, payload, django_assert_max_num_queries
):
    url, batch = payload(readers)

    # One INSERT for the batch, and one lookup for events without Rally's
    # metadata (the one about other mail), whatever the batch's size.
    with django_assert_max_num_queries(2):
        response = client.post(
            url, data=json.dumps(batch), content_type="application/json", HTTP_AUTHORIZATION=AUTH
        )
    tracking.delivery_events_apply_pending()

    assert response.status_code == 200
    for name in ("opener", "bouncer", "soft", "complainer", "quiet"):
        readers[name].refresh_from_db()
    assert readers["opener"].delivered_at is not None
    assert readers["opener"].opened_at is not None
    assert status(readers["bouncer"]) == Supporter.Status.BOUNCED
    assert readers["bouncer"].bounced_at is not None
    # A full mailbox or a blocked IP is temporary: deferred, nobody suppressed for it.
    assert readers["soft"].deferred_at is not None
    assert readers["soft"].bounced_at is None
    assert status(readers["soft"]) == Supporter.Status.ACTIVE
    assert status(readers["complainer"]) == Supporter.Status.COMPLAINED
    assert Suppression.objects.count() == 2
    # The event for other mail on the same account is acknowledged and dropped.
    assert not DeliveryEvent.objects.filter(delivery=readers["quiet"]).exists()


def test_a_resent_batch_changes_nothing(client, readers):
    url, batch = sendgrid(readers)
    for _ in range(2):
        client.post(
            url, data=json.dumps(batch), content_type="application/json", HTTP_AUTHORIZATION=AUTH
        )
        tracking.delivery_events_apply_pending()

    assert DeliveryEvent.objects.count() == 6
    assert Suppression.objects.count() == 2


def test_events_without_metadata_are_found_by_message_id_and_recipient(client, readers):
    """Mail sent without Rally's metadata still maps back, in one query for the batch."""
    batch = [
        {
            "email": f"{name}@example.com",
            "timestamp": WHEN + n,
            "sg_event_id": f"sg-plain-{n}",
            "anymail_id": readers[name].esp_message_id,
            "event": "delivered",
        }
        for n, name in enumerate(["opener", "bouncer", "soft"])
    ]
    batch.append({**batch[0], "sg_event_id": "sg-stranger", "email": "stranger@example.com"})

    client.post(
        "/anymail/sendgrid/tracking/",
        data=json.dumps(batch),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )
    tracking.delivery_events_apply_pending()

    delivered = Delivery.objects.filter(delivered_at__isnull=False)
    assert set(delivered.values_list("supporter__email", flat=True)) == {
        "opener@example.com",
        "bouncer@example.com",
        "soft@example.com",
    }


def test_the_cost_of_a_batch_does_not_grow_with_its_size(
    client, readers, django_assert_num_queries
):
    deliveries = list(readers.values())
    batch = [
        {
            "email": "reader@example.com",
            "timestamp": WHEN + n,
            "sg_event_id": f"sg-open-{n}",
            "event": "open",
            "delivery_id": str(deliveries[n % 5].pk),
        }
        for n in range(1000)
    ]

    with django_assert_num_queries(1):
        client.post(
            "/anymail/sendgrid/tracking/",
            data=json.dumps(batch),
            content_type="application/json",
            HTTP_AUTHORIZATION=AUTH,
        )
    assert tracking.delivery_events_apply_pending() == 1000

    readers["quiet"].refresh_from_db()
    assert readers["quiet"].last_opened_at.timestamp() == WHEN + 999
