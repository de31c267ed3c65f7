"""The cast of the A/B test and deliverability guard tests: readers, a tested newsletter."""

import base64
import json

import pytest
from django.conf import settings
from django.test import override_settings

from crm.models import Subscription, Supporter, email_hash
from mailings import guard, sending, services, throttle, tracking
from mailings.models import ABTest, Delivery, Variant
from tests.browser.conftest import browser_page, chromium  # noqa: F401 - for test_browser
from tests.factories import MailingFactory
from tests.integration.conftest import broker, sink  # noqa: F401 - for test_guard_with_worker

WEBHOOK_AUTH = "Basic " + base64.b64encode(b"rally:webhook-secret").decode()

SUBJECTS = (
    "Why the UK needs an atrocity-prevention strategy",
    "Three things your MP can do this month",
    "Will you ask your MP one question?",
)


@pytest.fixture(autouse=True)
def _clean_state(fresh_cache, settings):
    settings.RALLY_GUARD_CHECK_SECONDS = 0
    throttle.clear()
    guard._last_checked.clear()
    yield
    throttle.clear()


def make_readers(interest, count):
    """Return `count` supporters subscribed to `interest`, made in two queries."""
    supporters = Supporter.objects.bulk_create(
        Supporter(
            email=f"reader{n}@example.org",
            email_hash=email_hash(f"reader{n}@example.org"),
            first_name=f"Reader{n}",
        )
        for n in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(supporter=s, interest=interest, status=Subscription.Status.SUBSCRIBED)
        for s in supporters
    )
    return supporters


@pytest.fixture
def readers(interest):
    """Forty readers of the Responsibility to Protect newsletter."""
    return make_readers(interest, 40)


def ab_mailing(interest, *, variants=2, percent=50, hours=4, choose="auto", measure="clicks"):
    mailing = MailingFactory(name="Atrocity prevention strategy", interests=[interest])
    ABTest.objects.create(
        mailing=mailing, test_percent=percent, test_hours=hours, choose=choose, measure=measure
    )
    for position in range(variants):
        Variant.objects.create(mailing=mailing, position=position, subject=SUBJECTS[position])
    return mailing


@pytest.fixture
def tested(interest):
    """A newsletter testing two subjects on half its audience, the winner chosen by clicks."""
    return ab_mailing(interest)


def start(mailing, user, capture):
    """Start sending without running the queued tasks; return the mailing, resolved."""
    with capture(execute=False):
        services.mailing_send_now(mailing=mailing, actor=user)
    services.mailing_start(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing


def drain(mailing):
    """Send what can be sent now, as a sending task does."""
    return sending.mailing_send_batches(mailing_id=mailing.pk)


def postmark_bounce(delivery, *, kind="HardBounce", event_id):
    """Postmark's bounce (or spam complaint) webhook for `delivery`, as Postmark posts it."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": event_id,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 512,
        "Name": "Hard bounce" if kind == "HardBounce" else "Spam complaint",
        "Tag": "newsletter",
        "MessageID": delivery.esp_message_id,
        "Metadata": {"mailing_id": str(delivery.mailing_id), "delivery_id": str(delivery.pk)},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": delivery.supporter.email,
        "From": "campaign@rally.example.org",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Why the UK needs an atrocity-prevention strategy",
    }


def post_bounces(client, deliveries, *, kind="HardBounce"):
    """Post a Postmark webhook per delivery to the real URL, then apply them as the worker does."""
    secret = {**settings.ANYMAIL, "WEBHOOK_SECRET": "rally:webhook-secret"}
    for number, delivery in enumerate(deliveries, start=1):
        with override_settings(ANYMAIL=secret):
            response = client.post(
                "/anymail/postmark/tracking/",
                data=json.dumps(postmark_bounce(delivery, kind=kind, event_id=9000 + number)),
                content_type="application/json",
                HTTP_AUTHORIZATION=WEBHOOK_AUTH,
            )
        assert response.status_code == 200
    tracking.delivery_events_apply_pending()


def sent_deliveries(mailing):
    return list(
        Delivery.objects.filter(mailing=mailing, status=Delivery.Status.SENT)
        .select_related("supporter")
        .order_by("pk")
    )
