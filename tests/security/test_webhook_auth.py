"""ESP webhooks refuse callers without the right credentials, and oversized bodies.

Each refused call answers 401, 403 or 413 and leaves every table as it was;
the same event with the right credentials is recorded, so the refusals are
not an accident of a broken payload.
"""

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from crm.models import Supporter, Suppression
from mailings import tracking
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, SupporterFactory
from tests.security.conftest import (
    MAILGUN_SIGNING_KEY,
    WEBHOOK_AUTH,
    changed_tables,
    database_state,
)

pytestmark = pytest.mark.django_db

POSTMARK = "/anymail/postmark/tracking/"
MAILGUN = "/anymail/mailgun/tracking/"


def basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


WRONG_CREDENTIALS = {
    "none": None,
    "wrong password": basic("rally:not-the-secret"),
    "wrong user": basic("someone:webhook-secret"),
    "empty": basic(":"),
    "bearer scheme": "Bearer webhook-secret",
    "not base64": "Basic %%%%",
    "secret not encoded": "Basic rally:webhook-secret",
    "secret as prefix": basic("rally:webhook-secret-and-more"),
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


def postmark_bounce(delivery):
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": delivery.esp_message_id,
        "Metadata": {"delivery_id": str(delivery.pk)},
        "Email": "john@example.com",
        "BouncedAt": "2026-11-05T16:33:54Z",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
    }


def mailgun_complaint(delivery, *, key=MAILGUN_SIGNING_KEY, token="a8ce0edb2dd8301dee6c2405"):
    timestamp = str(int(time.time()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": "complained",
            "id": "CPgfbmQMTCKtHW6uIWtuVe",
            "timestamp": time.time(),
            "recipient": "john@example.com",
            "user-variables": {"delivery_id": str(delivery.pk)},
            "message": {"headers": {"message-id": "20261105182626.18666@rally.example.org"}},
        },
    }


def post_json(url, payload, auth, **extra):
    client = Client(raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    return client.post(
        url, data=json.dumps(payload), content_type="application/json", **headers, **extra
    )


@pytest.mark.parametrize("auth", list(WRONG_CREDENTIALS.values()), ids=list(WRONG_CREDENTIALS))
@pytest.mark.parametrize("url", [POSTMARK, MAILGUN], ids=["postmark", "mailgun"])
def test_webhook_with_missing_or_wrong_credentials_gets_401_and_changes_nothing(
    webhook_settings, delivery, url, auth
):
    """Basic auth is checked first: anything but the secret gets a 401 challenge."""
    payload = postmark_bounce(delivery) if url == POSTMARK else mailgun_complaint(delivery)
    before = database_state()

    response = post_json(url, payload, auth)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert changed_tables(before, database_state()) == []


def test_mailgun_event_with_a_wrong_signature_gets_403_and_changes_nothing(
    webhook_settings, delivery
):
    """Right basic auth, but signed with another key: Mailgun's own check refuses it."""
    before = database_state()

    forged = post_json(MAILGUN, mailgun_complaint(delivery, key="guessed-key"), WEBHOOK_AUTH)
    unsigned_payload = mailgun_complaint(delivery)
    del unsigned_payload["signature"]
    unsigned = post_json(MAILGUN, unsigned_payload, WEBHOOK_AUTH)

    assert (forged.status_code, unsigned.status_code) == (403, 403)
    assert changed_tables(before, database_state()) == []


def test_mailgun_replayed_signature_with_altered_event_is_only_what_was_signed(
    webhook_settings, delivery
):
    """Mailgun signs timestamp and token only; Rally relies on basic auth too, so
    a replay without the secret is refused before the signature is looked at."""
    before = database_state()

    response = post_json(MAILGUN, mailgun_complaint(delivery), auth=None)

    assert response.status_code == 401
    assert changed_tables(before, database_state()) == []


@pytest.mark.parametrize("url", [POSTMARK, MAILGUN], ids=["postmark", "mailgun"])
def test_the_same_event_with_the_right_credentials_is_recorded(webhook_settings, delivery, url):
    payload = postmark_bounce(delivery) if url == POSTMARK else mailgun_complaint(delivery)

    response = post_json(url, payload, WEBHOOK_AUTH)
    tracking.delivery_events_apply_pending()  # as the "webhooks" worker does next

    assert response.status_code == 200
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 1
    assert Suppression.objects.count() == 1


@pytest.mark.parametrize("url", [POSTMARK, MAILGUN], ids=["postmark", "mailgun"])
def test_oversized_body_gets_413_unread_and_changes_nothing(webhook_settings, delivery, url):
    """A body over RALLY_WEBHOOK_MAX_BYTES is refused by its length, with or without auth."""
    limit = webhook_settings.RALLY_WEBHOOK_MAX_BYTES
    payload = postmark_bounce(delivery) if url == POSTMARK else mailgun_complaint(delivery)
    payload["Padding"] = "x" * limit
    before = database_state()

    with_auth = post_json(url, payload, WEBHOOK_AUTH)
    without_auth = post_json(url, payload, auth=None)

    assert (with_auth.status_code, without_auth.status_code) == (413, 413)
    assert changed_tables(before, database_state()) == []


def test_oversized_body_is_refused_before_it_is_read(webhook_settings, delivery):
    """The length header alone decides: a lying Content-Length is refused without reading."""
    before = database_state()
    client = Client(raise_request_exception=False)

    response = client.generic(
        "POST",
        POSTMARK,
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=WEBHOOK_AUTH,
        CONTENT_LENGTH=str(webhook_settings.RALLY_WEBHOOK_MAX_BYTES + 1),
    )

    assert response.status_code == 413
    assert changed_tables(before, database_state()) == []


def test_body_at_the_limit_is_accepted(webhook_settings, delivery):
    webhook_settings.RALLY_WEBHOOK_MAX_BYTES = 4096
    payload = postmark_bounce(delivery)
    body = json.dumps(payload)
    payload["Padding"] = "x" * (4096 - len(body) - len(', "Padding": ""'))
    assert len(json.dumps(payload)) == 4096

    response = post_json(POSTMARK, payload, WEBHOOK_AUTH)
    tracking.delivery_events_apply_pending()

    assert response.status_code == 200
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.BOUNCED


def test_general_upload_limit_still_applies_to_form_bodies(webhook_settings, delivery):
    """A form-encoded webhook body within the webhook limit but over Django's field
    count limit is refused as a bad request, not a crash."""
    client = Client(raise_request_exception=False)
    fields = {f"f{n}": "x" for n in range(webhook_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    before = database_state()

    response = client.post(MAILGUN, fields, HTTP_AUTHORIZATION=WEBHOOK_AUTH)

    assert response.status_code == 400
    assert changed_tables(before, database_state()) == []


def sendgrid_bounce(delivery):
    return [
        {
            "email": "john@example.com",
            "timestamp": 1763900000,
            "event": "bounce",
            "sg_event_id": "sg-bounce",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "550 5.1.1 No such user",
            "type": "bounce",
            "delivery_id": str(delivery.pk),
        }
    ]


@pytest.fixture
def no_webhook_secret(webhook_settings):
    """Production with ANYMAIL_WEBHOOK_SECRET forgotten: DEBUG off, every other setting there."""
    webhook_settings.ANYMAIL = {
        key: value for key, value in webhook_settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"
    }
    webhook_settings.DEBUG = False
    return webhook_settings


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailWarning")
@pytest.mark.parametrize(
    ("url", "payload"),
    [
        (POSTMARK, postmark_bounce),
        (MAILGUN, mailgun_complaint),
        ("/anymail/sendgrid/tracking/", sendgrid_bounce),
    ],
    ids=["postmark", "mailgun", "sendgrid"],
)
def test_without_a_webhook_secret_every_webhook_answers_403_and_records_nothing(
    no_webhook_secret, delivery, url, payload, caplog
):
    """A forgotten secret fails closed: no one can post bounces or complaints, even
    a correctly signed Mailgun event, and the log says what to set, naming no one."""
    before = database_state()

    anonymous = post_json(url, payload(delivery), auth=None)
    with_credentials = post_json(url, payload(delivery), WEBHOOK_AUTH)
    tracking.delivery_events_apply_pending()

    assert (anonymous.status_code, with_credentials.status_code) == (403, 403)
    assert changed_tables(before, database_state()) == []
    assert "ANYMAIL_WEBHOOK_SECRET is not set" in caplog.text
    assert "john@example.com" not in caplog.text


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailInsecureWebhookWarning")
def test_the_secret_is_read_when_the_webhook_is_called(no_webhook_secret, delivery):
    """Setting the secret (or DEBUG, in development) takes effect without a new URLconf."""
    refused = post_json(POSTMARK, postmark_bounce(delivery), auth=None)
    no_webhook_secret.DEBUG = True
    in_development = post_json(POSTMARK, postmark_bounce(delivery), auth=None)

    assert (refused.status_code, in_development.status_code) == (403, 200)
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 1
