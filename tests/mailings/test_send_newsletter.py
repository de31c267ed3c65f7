"""Sending a newsletter end to end through the task queue (run inline here)."""

import email
import email.policy
from collections import Counter

import pytest
from django.core import mail

from mailings import services
from mailings.models import Delivery, Mailing

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_now(tasks_run_now, django_capture_on_commit_callbacks):
    """Send a mailing as staff would, with the queued tasks run straight away."""

    def send(mailing, user):
        with django_capture_on_commit_callbacks(execute=True):
            services.mailing_send_now(mailing=mailing, actor=user)

    return send


def test_each_subscriber_gets_one_personal_copy(newsletter, subscribers, campaign_user, sent_now):
    """Sending resolves the audience into deliveries and sends each exactly once."""
    sent_now(newsletter, campaign_user)

    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SENT
    assert newsletter.recipient_count == 5
    sent_to = Counter(message.to[0].split("<")[-1].rstrip(">") for message in mail.outbox)
    assert sent_to == Counter({s.email: 1 for s in subscribers})
    deliveries = Delivery.objects.filter(mailing=newsletter)
    assert {d.status for d in deliveries} == {Delivery.Status.SENT}
    assert all(d.sent_at and d.esp_message_id != "" for d in deliveries)


def test_message_carries_unsubscribe_headers_and_tracking_metadata(
    newsletter, subscribers, campaign_user, sent_now
):
    sent_now(newsletter, campaign_user)

    message = next(m for m in mail.outbox if subscribers[0].email in m.to[0])
    delivery = Delivery.objects.get(mailing=newsletter, supporter=subscribers[0])
    params = message.anymail_test_params
    assert params["metadata"] == {"mailing_id": str(newsletter.pk), "delivery_id": str(delivery.pk)}
    assert params["tags"] == ["newsletter"]
    headers = params["extra_headers"]
    assert headers["List-Unsubscribe"].startswith("<https://rally.example.org/unsubscribe/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == '"Responsibility to Protect" <r2p.rally.example.org>'


def test_merge_fields_use_first_name_or_fallback(newsletter, interest, campaign_user, sent_now):
    from tests.factories import SupporterFactory

    SupporterFactory(email="named@example.org", first_name="Amara", subscribed_to=[interest])
    SupporterFactory(email="nameless@example.org", first_name="", subscribed_to=[interest])

    sent_now(newsletter, campaign_user)

    bodies = {m.to[0].split("<")[-1].rstrip(">"): m.body for m in mail.outbox}
    assert bodies["named@example.org"].startswith("Dear Amara,")
    assert bodies["nameless@example.org"].startswith("Dear friend,")


def test_visible_unsubscribe_and_preferences_links_in_body(
    newsletter, subscribers, campaign_user, sent_now
):
    sent_now(newsletter, campaign_user)

    message = mail.outbox[0]
    html = message.alternatives[0][0]
    assert "Unsubscribe from these emails" in html
    assert 'href="https://rally.example.org/unsubscribe/' in html
    assert 'href="https://rally.example.org/preferences/' in html
    assert "Unsubscribe from these emails: https://rally.example.org/unsubscribe/" in message.body


def test_plain_text_is_generated_from_html(newsletter, subscribers, campaign_user, sent_now):
    sent_now(newsletter, campaign_user)

    text = mail.outbox[0].body
    assert "Read our briefing (https://example.org/strategy)." in text
    assert "<" not in text.split("--")[0]


def test_hand_written_plain_text_is_kept(newsletter, subscribers, campaign_user, sent_now):
    newsletter.body_text = "Hello {{ first_name }}, this is the text version."
    newsletter.save()

    sent_now(newsletter, campaign_user)

    assert mail.outbox[0].body.startswith("Hello Reader")


def test_raw_mime_has_one_click_headers(newsletter, subscribers, campaign_user, sent_now):
    """What a mailbox provider reads: RFC 8058 headers in the message itself."""
    sent_now(newsletter, campaign_user)

    raw = mail.outbox[0].message().as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"].strip().startswith("<https://")


def test_mailto_unsubscribe_added_when_configured(
    settings, newsletter, subscribers, campaign_user, sent_now
):
    settings.RALLY_UNSUBSCRIBE_MAILTO = "unsubscribe@rally.example.org"

    sent_now(newsletter, campaign_user)

    header = mail.outbox[0].anymail_test_params["extra_headers"]["List-Unsubscribe"]
    assert header.endswith(", <mailto:unsubscribe@rally.example.org?subject=unsubscribe>")
