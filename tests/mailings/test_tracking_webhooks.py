"""Tracking webhooks: the ESP's literal JSON posted to /anymail/<esp>/tracking/.

Each helper posts, then runs the apply step as the "webhooks" worker does
straight after (tests/mailings/test_tracking_apply.py covers the two steps
apart).
"""

import base64
import hashlib
import hmac
import json
import time

import pytest

from crm.models import ConsentRecord, Supporter, Suppression
from mailings import tracking
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, SupporterFactory

pytestmark = pytest.mark.django_db

AUTH = "Basic " + base64.b64encode(b"rally:webhook-secret").decode()
SIGNING_KEY = "mailgun-signing-key"


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": "rally:webhook-secret",
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def delivery(newsletter, interest):
    reader = SupporterFactory(email="john@example.com", first_name="John", subscribed_to=[interest])
    return DeliveryFactory(
        mailing=newsletter,
        supporter=reader,
        status=Delivery.Status.SENT,
        esp_message_id="883953f4-6105-42a2-a16a-77a8eac79483",
    )


def postmark(client, payload, auth=AUTH):
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    response = client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **headers,
    )
    tracking.delivery_events_apply_pending()
    return response


def mailgun(client, event_data, *, token="a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"):
    timestamp = str(int(time.time()))
    signature = hmac.new(
        SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    response = client.post(
        "/anymail/mailgun/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )
    tracking.delivery_events_apply_pending()
    return response


def postmark_delivery(delivery, delivered_at="2026-11-05T16:33:54.9070259Z"):
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "broadcast",
        "MessageID": delivery.esp_message_id,
        "Recipient": "john@example.com",
        "Tag": "newsletter",
        "DeliveredAt": delivered_at,
        "Details": "Test delivery webhook details",
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
    }


def postmark_bounce(delivery, kind="HardBounce", bounce_id=4323372036854775807):
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "newsletter",
        "MessageID": delivery.esp_message_id,
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "john@example.com",
        "From": "campaign@rally.example.org",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Why the UK needs an atrocity-prevention strategy",
    }


def postmark_open(delivery, received_at):
    return {
        "RecordType": "Open",
        "MessageStream": "broadcast",
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "FirstOpen": True,
        "Recipient": "john@example.com",
        "MessageID": delivery.esp_message_id,
        "ReceivedAt": received_at,
        "Platform": "WebMail",
        "ReadSeconds": 5,
        "Tag": "newsletter",
        "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
        "OS": {"Name": "OS X", "Family": "OS X", "Company": "Apple Computer, Inc."},
        "Client": {"Name": "Chrome", "Family": "Chrome", "Company": "Google"},
        "Geo": {"CountryISOCode": "GB", "Country": "United Kingdom", "City": "London"},
    }


def mailgun_event(delivery, event, **extra):
    data = {
        "tags": ["newsletter"],
        "timestamp": 1763900000.908181,
        "id": "CPgfbmQMTCKtHW6uIWtuVe",
        "user-variables": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "log-level": "info",
        "message": {
            "headers": {
                "to": "John <john@example.com>",
                "message-id": "20261105182626.18666.16540@rally.example.org",
                "from": "Campaign team <campaign@rally.example.org>",
                "subject": "Why the UK needs an atrocity-prevention strategy",
            },
            "attachments": [],
            "size": 111,
        },
        "recipient": "john@example.com",
        "event": event,
    }
    data.update(extra)
    return data


def test_delivery_is_recorded_once_however_often_it_arrives(client, delivery):
    for _ in range(3):
        assert postmark(client, postmark_delivery(delivery)).status_code == 200

    delivery.refresh_from_db()
    assert delivery.delivered_at.isoformat().startswith("2026-11-05T16:33:54")
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 1


def test_hard_bounce_marks_supporter_bounced_and_suppresses_address(client, delivery):
    assert postmark(client, postmark_bounce(delivery)).status_code == 200
    assert postmark(client, postmark_bounce(delivery)).status_code == 200

    delivery.refresh_from_db()
    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    assert delivery.bounced_at is not None
    assert supporter.status == Supporter.Status.BOUNCED
    assert Suppression.objects.filter(email_hash=supporter.email_hash).count() == 1
    assert Suppression.objects.get().reason == Suppression.Reason.HARD_BOUNCE
    withdrawn = ConsentRecord.objects.filter(supporter=supporter, action="withdrawn")
    assert [(r.method, r.mailing_id) for r in withdrawn] == [("bounce", delivery.mailing_id)]


def test_soft_bounce_suppresses_nobody(client, delivery):
    assert postmark(client, postmark_bounce(delivery, kind="SoftBounce")).status_code == 200

    delivery.refresh_from_db()
    assert delivery.bounced_at is None
    assert delivery.deferred_at is not None
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.ACTIVE
    assert not Suppression.objects.exists()


def test_spam_complaint_unsubscribes_from_everything(client, delivery):
    complaint = {
        **postmark_bounce(delivery, kind="SpamComplaint", bounce_id=42),
        "RecordType": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
    }

    assert postmark(client, complaint).status_code == 200

    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    assert supporter.status == Supporter.Status.COMPLAINED
    assert not supporter.subscriptions.filter(status="subscribed").exists()
    record = ConsentRecord.objects.get(supporter=supporter, action="withdrawn")
    assert (record.method, record.interest, record.mailing_id) == (
        "complaint",
        None,
        delivery.mailing_id,
    )
    assert Suppression.objects.get(email_hash=supporter.email_hash).reason == "complaint"


def test_unsubscribe_at_the_esp_is_honoured(client, delivery):
    change = {
        "RecordType": "SubscriptionChange",
        "MessageID": delivery.esp_message_id,
        "ServerID": 23,
        "MessageStream": "broadcast",
        "ChangedAt": "2026-11-06T10:53:34.416071Z",
        "Recipient": "john@example.com",
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "Tag": "newsletter",
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
    }

    assert postmark(client, change).status_code == 200

    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    assert Suppression.objects.get(email_hash=supporter.email_hash).reason == "esp_unsubscribe"
    assert ConsentRecord.objects.filter(method="esp_unsubscribe", mailing=delivery.mailing).exists()


def test_opens_out_of_order_keep_first_and_latest(client, delivery):
    postmark(client, postmark_open(delivery, "2026-11-07T09:00:00Z"))
    postmark(client, postmark_open(delivery, "2026-11-05T18:00:00Z"))
    postmark(client, postmark_open(delivery, "2026-11-06T12:00:00Z"))

    delivery.refresh_from_db()
    assert delivery.opened_at.isoformat() == "2026-11-05T18:00:00+00:00"
    assert delivery.last_opened_at.isoformat() == "2026-11-07T09:00:00+00:00"


def test_click_records_the_link(client, delivery):
    click = {
        "RecordType": "Click",
        "MessageStream": "broadcast",
        "ClickLocation": "HTML",
        "Platform": "Desktop",
        "UserAgent": "Mozilla/5.0",
        "OriginalLink": "https://example.org/strategy",
        "MessageID": delivery.esp_message_id,
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "ReceivedAt": "2026-11-05T17:21:11.0000000Z",
        "Tag": "newsletter",
        "Recipient": "john@example.com",
    }

    assert postmark(client, click).status_code == 200

    delivery.refresh_from_db()
    assert delivery.clicked_at is not None
    assert DeliveryEvent.objects.get(delivery=delivery).url == "https://example.org/strategy"


def test_delivery_of_unknown_fate_is_confirmed_by_a_tracking_event(client, delivery):
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.UNKNOWN)

    postmark(client, postmark_delivery(delivery))

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT


def test_event_for_someone_elses_mail_is_acknowledged_and_ignored(client, delivery):
    payload = postmark_delivery(delivery)
    payload["Metadata"] = {}
    payload["MessageID"] = "not-ours"

    assert postmark(client, payload).status_code == 200
    assert not DeliveryEvent.objects.exists()


@pytest.mark.parametrize("auth", [None, "Basic " + base64.b64encode(b"rally:wrong").decode()])
def test_webhook_without_the_secret_is_refused_and_changes_nothing(client, delivery, auth):
    response = postmark(client, postmark_bounce(delivery), auth=auth)

    assert response.status_code in (400, 401, 403)
    assert not DeliveryEvent.objects.exists()
    assert not Suppression.objects.exists()


def test_mailgun_delivered_and_permanent_failure(client, delivery):
    assert mailgun(client, mailgun_event(delivery, "delivered"), token="t1").status_code == 200
    failed = mailgun_event(
        delivery,
        "failed",
        id="Fs7-5t81S2ilnrO3mT6a9Q",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""}},
    )
    assert mailgun(client, failed, token="t2").status_code == 200

    delivery.refresh_from_db()
    assert delivery.delivered_at is not None
    assert delivery.bounced_at is not None
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.BOUNCED


def test_mailgun_temporary_failure_is_only_deferred(client, delivery):
    deferred = mailgun_event(delivery, "failed", severity="temporary", reason="generic")

    assert mailgun(client, deferred, token="t3").status_code == 200

    delivery.refresh_from_db()
    assert delivery.deferred_at is not None
    assert not Suppression.objects.exists()


def test_mailgun_complaint_and_repeat(client, delivery):
    for _ in range(2):
        assert mailgun(client, mailgun_event(delivery, "complained"), token="t4").status_code == 200

    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    assert supporter.status == Supporter.Status.COMPLAINED
    assert DeliveryEvent.objects.count() == 1
    assert ConsentRecord.objects.filter(supporter=supporter, method="complaint").count() == 1


def test_mailgun_bad_signature_is_refused(client, delivery):
    payload = {
        "signature": {"timestamp": str(int(time.time())), "token": "x", "signature": "0" * 64},
        "event-data": mailgun_event(delivery, "complained"),
    }

    response = client.post(
        "/anymail/mailgun/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )

    assert response.status_code in (400, 401, 403)
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.ACTIVE
