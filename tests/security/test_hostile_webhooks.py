"""Malformed and random tracking webhooks, with valid credentials.

Whatever an authenticated caller posts to /anymail/postmark/tracking/ or
/anymail/mailgun/tracking/, Rally answers 200 (recorded or ignored) or 4xx
(unreadable or refused), never 500; junk changes nothing, and an event that
is recorded is recorded whole: a suppression always comes with the delivery
event, the supporter's new status and the consent withdrawal.
"""

import hashlib
import hmac
import json
import time

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from crm.models import ConsentRecord, Supporter, Suppression
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
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
ADDRESS = "john@example.com"
OURS = "<the delivery's id>"  # replaced by the real id when posting

FIXTURES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def mostly(valid):
    """Values from `valid`, and one time in eight a JSON value of any type."""
    return st.integers(0, 7).flatmap(lambda n: json_values if n == 0 else valid)


delivery_ids = st.just(OURS) | st.integers() | st.text(max_size=30)
timestamps = mostly(
    st.datetimes().map(lambda moment: moment.isoformat() + "Z")
    | st.just("2026-11-05T16:33:54.9070259Z")
    | st.text(max_size=30)
)
addresses = mostly(st.just(ADDRESS) | st.emails() | st.text(max_size=40))

POSTMARK_RECORD_TYPES = [
    "Bounce",
    "Click",
    "Delivery",
    "Open",
    "SpamComplaint",
    "SubscriptionChange",
    "Inbound",
]
POSTMARK_BOUNCE_TYPES = [
    "HardBounce",
    "SoftBounce",
    "Transient",
    "Unsubscribe",
    "SpamNotification",
    "SpamComplaint",
    "BadEmailAddress",
    "ManuallyDeactivated",
    "Blocked",
    "DMARCPolicy",
    "ManualSuppression",
    "Unknown",
]

# Most events name the delivery, so that junk elsewhere meets a real one.
ours = st.just({"delivery_id": OURS}) | st.fixed_dictionaries(
    {}, optional={"delivery_id": delivery_ids}
)

postmark_events = st.fixed_dictionaries(
    {"RecordType": mostly(st.sampled_from(POSTMARK_RECORD_TYPES)), "Metadata": ours},
    optional={
        "Type": mostly(st.sampled_from(POSTMARK_BOUNCE_TYPES)),
        "ID": mostly(st.integers()),
        "MessageID": mostly(st.just(MESSAGE_ID)),
        "Recipient": addresses,
        "Email": addresses,
        "BouncedAt": timestamps,
        "DeliveredAt": timestamps,
        "ReceivedAt": timestamps,
        "ChangedAt": timestamps,
        "OriginalLink": mostly(st.text(max_size=3000)),
        "Description": mostly(st.text(max_size=600)),
        "Details": mostly(st.text(max_size=600)),
        "SuppressSending": mostly(st.booleans()),
        "SuppressionReason": mostly(st.sampled_from(["ManualSuppression", "HardBounce"])),
        "Tag": mostly(st.text(max_size=20)),
    },
)

MAILGUN_EVENTS = [
    "accepted",
    "rejected",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
]

mailgun_event_data = st.fixed_dictionaries(
    {"event": mostly(st.sampled_from(MAILGUN_EVENTS)), "user-variables": ours},
    optional={
        "id": mostly(st.text(max_size=40)),
        "timestamp": mostly(st.floats(min_value=0, max_value=4e9)),
        "recipient": addresses,
        "severity": mostly(st.sampled_from(["permanent", "temporary"])),
        "reason": mostly(st.sampled_from(["bounce", "suppress-bounce", "generic"])),
        "delivery-status": st.fixed_dictionaries(
            {},
            optional={
                "code": mostly(st.integers(200, 599)),
                "message": mostly(st.text(max_size=80)),
            },
        ),
        "message": st.fixed_dictionaries(
            {},
            optional={
                "headers": st.fixed_dictionaries(
                    {}, optional={"message-id": st.text(max_size=60) | json_values}
                )
            },
        ),
        "url": mostly(st.text(max_size=200)),
        "tags": mostly(st.lists(st.text(max_size=20), max_size=3)),
    },
)


@pytest.fixture
def delivery(webhook_settings, newsletter, interest):
    reader = SupporterFactory(email=ADDRESS, first_name="John", subscribed_to=[interest])
    return DeliveryFactory(
        mailing=newsletter, supporter=reader, status=Delivery.Status.SENT, esp_message_id=MESSAGE_ID
    )


def _with_our_id(value, delivery):
    """Replace the OURS placeholder anywhere in `value` by the delivery's id."""
    if value == OURS:
        return str(delivery.pk)
    if isinstance(value, dict):
        return {key: _with_our_id(item, delivery) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_our_id(item, delivery) for item in value]
    return value


def _mailgun_signature(token="fuzz-token"):
    timestamp = str(int(time.time()))
    digest = hmac.new(
        MAILGUN_SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


# One client for the whole module: each new Client loads the middleware again,
# and WhiteNoise then rescans the static files.
CLIENT = Client()


def _post(url, body, content_type):
    return CLIENT.post(url, data=body, content_type=content_type, HTTP_AUTHORIZATION=WEBHOOK_AUTH)


def _in_rolled_back_transaction(check):
    """Run `check` and undo its writes, so each example starts from the same state."""
    with transaction.atomic():
        check()
        transaction.set_rollback(True)


def assert_whole_or_nothing(delivery, before):
    """Junk changes nothing; a recorded event brings all of its consequences."""
    tracking.delivery_events_apply_pending()  # as the "webhooks" worker does next
    after = database_state()
    new_events = DeliveryEvent.objects.filter(delivery=delivery)
    if not new_events.exists():
        event("ignored or refused")
        assert changed_tables(before, after) == []
        return
    event(f"recorded {new_events.get().event_type}")
    assert new_events.count() == 1
    supporter = Supporter.objects.get(pk=delivery.supporter_id)
    suppressed = Suppression.objects.filter(email_hash=supporter.email_hash).exists()
    withdrawn = ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").exists()
    undeliverable = supporter.status in (
        Supporter.Status.BOUNCED,
        Supporter.Status.COMPLAINED,
        Supporter.Status.UNSUBSCRIBED,
    )
    assert suppressed == withdrawn == undeliverable
    if suppressed:
        assert new_events.get().event_type in ("bounced", "complained", "unsubscribed", "rejected")
    assert "crm.Supporter" not in changed_tables(before, after) or undeliverable


@FIXTURES
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
))  # fmt: skip
def test_random_bytes_never_crash_or_change_anything(delivery, body, content_type):
    def check():
        before = database_state()
        for url in (POSTMARK, MAILGUN):
            response = _post(url, body, content_type)
            assert response.status_code in (200, 400, 403), (url, response.status_code)
        assert changed_tables(before, database_state()) == []

    _in_rolled_back_transaction(check)


@FIXTURES
@given(payload=json_values)
def test_random_json_never_crashes_or_changes_anything(delivery, payload):
    def check():
        before = database_state()
        body = json.dumps(payload)
        for url in (POSTMARK, MAILGUN):
            response = _post(url, body, "application/json")
            assert response.status_code in (200, 400, 403), (url, response.status_code)
        assert changed_tables(before, database_state()) == []

    _in_rolled_back_transaction(check)


@FIXTURES
@given(fields=st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=12))
def test_random_form_bodies_never_crash_or_change_anything(delivery, fields):
    """Mailgun's legacy webhooks are form posts; a signed form with junk fields is read safely."""

    def check():
        before = database_state()
        for url, data in ((POSTMARK, fields), (MAILGUN, {**fields, **_mailgun_signature()})):
            response = CLIENT.post(url, data, HTTP_AUTHORIZATION=WEBHOOK_AUTH)
            assert response.status_code in (200, 400, 403), (url, response.status_code)
        assert changed_tables(before, database_state()) == []

    _in_rolled_back_transaction(check)


@FIXTURES
@given(event=postmark_events)
def test_postmark_events_with_junk_fields_are_recorded_whole_or_not_at_all(delivery, event):
    def check():
        before = database_state()
        response = _post(POSTMARK, json.dumps(_with_our_id(event, delivery)), "application/json")
        assert response.status_code in (200, 400)
        assert_whole_or_nothing(delivery, before)

    _in_rolled_back_transaction(check)


@FIXTURES
@given(event_data=mailgun_event_data)
# A time far beyond what the platform's clock can hold (found by this test).
@example(event_data={"event": "opened", "timestamp": 9_223_372_036_854_775_296})
def test_signed_mailgun_events_with_junk_fields_are_recorded_whole_or_not_at_all(
    delivery, event_data
):
    def check():
        before = database_state()
        payload = {"signature": _mailgun_signature(), "event-data": event_data}
        response = _post(MAILGUN, json.dumps(_with_our_id(payload, delivery)), "application/json")
        assert response.status_code in (200, 400)
        assert_whole_or_nothing(delivery, before)

    _in_rolled_back_transaction(check)


@pytest.mark.parametrize(
    "body",
    [
        "{",  # truncated
        '{"RecordType": "Bounce", "Type": "HardBounce"',  # cut off mid-object
        "[]",
        "null",
        '"Bounce"',
        "1e999",
        '{"RecordType": "Bounce", "BouncedAt": "2026-13-45T99:99:99Z"}',
        '{"RecordType": ["Bounce"]}',
        "\ufeff{}",
        "{}" * 1000,
    ],
)
def test_malformed_json_gets_400_or_is_ignored(delivery, body):
    before = database_state()

    for url in (POSTMARK, MAILGUN):
        response = _post(url, body, "application/json")
        assert response.status_code in (200, 400, 403)

    assert changed_tables(before, database_state()) == []


def test_unicode_digit_delivery_id_is_ignored(delivery):
    """ "²" passes str.isdigit() but not int(): such an id names no delivery."""
    event = {"RecordType": "Delivery", "Metadata": {"delivery_id": "²"}, "MessageID": "x"}
    before = database_state()

    response = Client(raise_request_exception=False).post(
        POSTMARK, data=json.dumps(event), content_type="application/json",
        HTTP_AUTHORIZATION=WEBHOOK_AUTH,
    )  # fmt: skip

    assert response.status_code == 200
    assert changed_tables(before, database_state()) == []


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_a_sendgrid_batch_passes_the_guard_and_is_recorded(delivery):
    """The guard's type checks let real events of the other documented ESPs through."""
    batch = [
        {
            "email": ADDRESS,
            "timestamp": 1763900000,
            "event": event_type,
            "sg_event_id": f"sg-{event_type}",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "category": ["newsletter"],
            "delivery_id": str(delivery.pk),
            **extra,
        }
        for event_type, extra in (
            ("delivered", {"response": "250 OK"}),
            ("bounce", {"reason": "550 5.1.1 No such user", "type": "bounce", "status": "5.1.1"}),
        )
    ]

    response = _post("/anymail/sendgrid/tracking/", json.dumps(batch), "application/json")
    tracking.delivery_events_apply_pending()

    assert response.status_code == 200
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 2
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.BOUNCED


def test_ids_may_be_numbers_and_a_tag_may_be_missing():
    """Postmark's bounce ids and Postal's message ids are numbers; Postal's tag can be null."""
    from anymail.signals import AnymailTrackingEvent

    from mailings.exceptions import UnreadablePayload
    from mailings.receivers import check_event

    check_event(AnymailTrackingEvent(event_type="bounced", event_id=42, message_id=7, tags=[None]))
    with pytest.raises(UnreadablePayload, match="message_id"):
        check_event(AnymailTrackingEvent(event_type="bounced", message_id=True))
    with pytest.raises(UnreadablePayload, match="click_url"):
        check_event(AnymailTrackingEvent(event_type="clicked", click_url={"a": 1}))


# Text PostgreSQL cannot take: a NUL character, and half of a UTF-16 surrogate
# pair (JSON's "\ud800" escape), which has no UTF-8 form.
UNSTORABLE = {"NUL": "\x00", "lone surrogate": "\ud800"}


def _post_unstorable_text(delivery, text):
    """Post Postmark events carrying `text` in every field Rally reads, with no delivery id."""
    events = [
        {"RecordType": "Delivery", "MessageID": MESSAGE_ID + text, "Recipient": ADDRESS},
        {"RecordType": "Delivery", "MessageID": text, "Recipient": ADDRESS + text},
        {
            "RecordType": "Click",
            "MessageID": MESSAGE_ID,
            "Recipient": ADDRESS,
            "OriginalLink": "https://example.org/" + text,
            "ReceivedAt": "2026-11-05T16:33:54Z",
        },
        {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "MessageID": MESSAGE_ID,
            "Email": ADDRESS,
            "Description": "Unknown user" + text,
            "BouncedAt": "2026-11-05T16:33:54Z",
        },
    ]
    client = Client(raise_request_exception=False)
    return [
        client.post(
            POSTMARK,
            data=json.dumps(event),  # ensure_ascii: "\u0000" and "\ud800" escapes, as ESPs send
            content_type="application/json",
            HTTP_AUTHORIZATION=WEBHOOK_AUTH,
        ).status_code
        for event in events
    ]


@pytest.mark.parametrize("text", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_text_the_database_cannot_store_is_dropped_or_refused_never_a_500(delivery, text):
    """A message id that cannot be stored names no delivery; other fields lose the bad text."""
    statuses = _post_unstorable_text(delivery, text)
    tracking.delivery_events_apply_pending()

    assert all(status in (200, 400) for status in statuses), statuses
    for recorded in DeliveryEvent.objects.filter(delivery=delivery):
        assert text not in recorded.url + recorded.reason + recorded.dedupe_key


@pytest.mark.postgres
@pytest.mark.parametrize("text", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_text_postgresql_cannot_store_is_dropped_or_refused_never_a_500(delivery, text):
    """PostgreSQL refuses NUL and unpaired surrogates in text, even as query parameters."""
    statuses = _post_unstorable_text(delivery, text)
    tracking.delivery_events_apply_pending()

    assert all(status in (200, 400) for status in statuses), statuses
    assert Supporter.objects.get(pk=delivery.supporter_id).status == Supporter.Status.BOUNCED


NOT_WEB_LINKS = [
    "javascript:alert(document.cookie)",
    " JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "\x01javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "https:javascript:alert(1)",
    "//evil.example/",
    "http://[::1",
]


def _click(delivery, link, n):
    return {
        "RecordType": "Click",
        "MessageID": MESSAGE_ID,
        "Recipient": ADDRESS,
        "OriginalLink": link,
        "ReceivedAt": f"2026-11-05T16:{n:02d}:54Z",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }


@pytest.mark.parametrize("link", NOT_WEB_LINKS)
def test_a_click_on_a_link_that_is_not_http_is_counted_but_its_link_never_kept(delivery, link):
    """The report links to stored click URLs: only http(s) ones are kept."""
    response = _post(POSTMARK, json.dumps(_click(delivery, link, 1)), "application/json")
    tracking.delivery_events_apply_pending()

    assert response.status_code == 200
    assert DeliveryEvent.objects.get(delivery=delivery).url == ""
    delivery.refresh_from_db()
    assert delivery.clicked_at is not None


def test_http_and_https_click_links_are_kept(delivery):
    links = ["https://www.example-charity.org.uk/act?x=1", "HTTP://example.org/"]
    for n, link in enumerate(links):
        _post(POSTMARK, json.dumps(_click(delivery, link, n)), "application/json")

    stored = DeliveryEvent.objects.filter(delivery=delivery).values_list("url", flat=True)
    assert sorted(stored) == sorted(links)
