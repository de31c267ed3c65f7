"""The mailings admin: compose, check, test-send, send, watch and report, for the right roles."""

import datetime
import json

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from mailings.models import Delivery, DeliveryEvent, Mailing
from tests.factories import DeliveryFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def url(name, mailing, *args):
    return reverse(f"admin:mailings_mailing_{name}", args=[mailing.pk, *args])


@pytest.fixture
def manager(client, campaign_user):
    client.force_login(campaign_user)
    return client


@pytest.fixture
def membership(client, membership_user):
    client.force_login(membership_user)
    return client


def test_campaign_manager_composes_a_mailing(manager, interest):
    response = manager.post(
        reverse("admin:mailings_mailing_add"),
        {
            "name": "MP letters",
            "subject": "Write to your MP about an atrocity-prevention strategy",
            "preheader": "",
            "blocks": json.dumps([{"type": "text", "html": "<p>Dear {{ first_name }},</p>"}]),
            "body_text": "",
            "from_name": "",
            "from_email": "",
            "reply_to": "",
            "interests": [interest.pk],
        },
    )

    assert response.status_code == 302
    mailing = Mailing.objects.get(name="MP letters")
    assert mailing.status == Mailing.Status.DRAFT
    assert list(mailing.interests.all()) == [interest]


def test_unknown_merge_field_is_a_form_error(manager, interest):
    response = manager.post(
        reverse("admin:mailings_mailing_add"),
        {
            "name": "Typo",
            "subject": "Hi",
            "blocks": '[{"type": "text", "html": "<p>{{ frist_name }}</p>"}]',
        },
    )

    assert response.status_code == 200
    assert "Unknown merge field" in response.content.decode()
    assert not Mailing.objects.filter(name="Typo").exists()


def test_change_page_shows_exact_count_and_warnings(manager, newsletter, subscribers, settings):
    settings.SITE_URL = "http://rally.example.org"
    old_link = '<p><a href="http://example.org/old">old link</a></p>'
    newsletter.blocks += [{"id": "old", "type": "text", "html": old_link}]
    newsletter.save()

    page = manager.get(reverse("admin:mailings_mailing_change", args=[newsletter.pk]))

    text = page.content.decode()
    assert "<strong>5</strong> supporters would receive it" in text
    assert "http://example.org/old" in text
    assert "No one-click unsubscribe is possible" in text


def test_empty_audience_is_warned(manager, newsletter):
    page = manager.get(reverse("admin:mailings_mailing_change", args=[newsletter.pk]))

    assert "Nobody would receive this mailing" in page.content.decode()


def test_preview_for_a_chosen_supporter_in_html_and_text(manager, newsletter, subscribers):
    page = manager.get(url("preview", newsletter), {"supporter": subscribers[0].email})

    text = page.content.decode()
    assert page.status_code == 200
    assert "Dear Reader0," in text  # inside the iframe's srcdoc and the text part
    assert "<pre>Dear Reader0," in text
    assert "List-Unsubscribe-Post" in text


def test_preview_with_a_sample_supporter(manager, newsletter):
    page = manager.get(url("preview", newsletter))

    assert "Dear Sam," in page.content.decode()


def test_test_send_goes_to_the_staff_members_own_address(
    manager, newsletter, campaign_user, settings
):
    settings.RALLY_TEST_SEND_ALLOWED = ["carl.gmail@example.net"]
    response = manager.post(url("test", newsletter), {"also_to": "carl.gmail@example.net"})

    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == ["carl.gmail@example.net", campaign_user.email]
    assert mail.outbox[0].subject.startswith("[Test] ")
    assert not Delivery.objects.exists()
    header = mail.outbox[0].extra_headers["List-Unsubscribe"]
    assert "/unsubscribe/" in header  # a stand-in link that unsubscribes nobody


def test_send_needs_confirmation_then_starts(
    manager, newsletter, subscribers, django_capture_on_commit_callbacks
):
    confirm = manager.get(url("send", newsletter))
    assert "<strong>5</strong> supporters" in confirm.content.decode()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = manager.post(url("send", newsletter))

    assert response.status_code == 302
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SENDING
    assert len(queued) == 1


def test_schedule_from_the_admin_shows_the_time(manager, newsletter):
    when = timezone.localtime(timezone.now() + datetime.timedelta(days=2)).replace(
        second=0, microsecond=0
    )

    manager.post(url("schedule", newsletter), {"send_at": when.strftime("%Y-%m-%dT%H:%M")})

    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SCHEDULED
    assert newsletter.scheduled_at == when
    page = manager.get(reverse("admin:mailings_mailing_change", args=[newsletter.pk]))
    assert "Scheduled to start sending on" in page.content.decode()


def test_edits_refused_once_sending_started(manager, newsletter):
    Mailing.objects.filter(pk=newsletter.pk).update(status=Mailing.Status.SENDING)

    response = manager.post(
        reverse("admin:mailings_mailing_change", args=[newsletter.pk]),
        {"name": "Changed", "subject": "Changed", "body_html": "<p>x</p>"},
    )

    assert response.status_code == 403
    newsletter.refresh_from_db()
    assert newsletter.name == "Duty to prevent"


def test_pause_resume_and_cancel_buttons(manager, newsletter, django_capture_on_commit_callbacks):
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENDING, recipient_count=0
    )

    manager.post(url("action", newsletter, "pause"))
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.PAUSED
    with django_capture_on_commit_callbacks(execute=False):
        manager.post(url("action", newsletter, "resume"))
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SENDING
    manager.post(url("action", newsletter, "cancel"))
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.CANCELLED


def test_progress_endpoint_reports_counts_and_eta(manager, newsletter):
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENDING, recipient_count=4, started_at=timezone.now()
    )
    for status in ("sent", "sent", "failed", "queued"):
        DeliveryFactory(mailing=newsletter, status=status, sent_at=timezone.now())

    data = manager.get(url("progress", newsletter)).json()

    assert (data["sent"], data["failed"], data["remaining"]) == (2, 1, 1)
    assert data["done_percent"] == 75.0
    assert data["eta_seconds"] is not None


def test_staff_see_while_sending_that_the_esp_is_down_and_when_it_recovered(
    manager, newsletter, fresh_cache
):
    from mailings import throttle

    throttle.clear()
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENDING, recipient_count=3, started_at=timezone.now()
    )
    DeliveryFactory(
        mailing=newsletter,
        status="queued",
        retry_at=timezone.now() + datetime.timedelta(minutes=1),
        error="ESP unavailable (503).",
    )
    try:
        throttle.esp_failed([1, 2, 3], "ESP unavailable (503).")

        page = manager.get(url("change", newsletter)).content.decode()
        data = manager.get(url("progress", newsletter)).json()
        throttle.esp_accepted()
        after = manager.get(url("progress", newsletter)).json()
    finally:
        throttle.clear()

    assert data["retrying"] == 1
    assert 'Waiting to retry <strong data-progress="retrying">1</strong>' in page
    assert "The email service has accepted nothing since" in data["esp_outage"]
    assert "(ESP unavailable (503))" in data["esp_outage"]
    assert data["esp_outage"] in page
    assert after["esp_outage"] == ""


def test_report_shows_figures_links_and_chart(manager, newsletter):
    started = timezone.now() - datetime.timedelta(hours=5)
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENT, recipient_count=3, started_at=started
    )
    for n in range(3):
        delivery = DeliveryFactory(
            mailing=newsletter,
            status="sent",
            delivered_at=started,
            opened_at=started + datetime.timedelta(hours=n),
            last_opened_at=started + datetime.timedelta(hours=n),
            clicked_at=started + datetime.timedelta(hours=1) if n else None,
        )
        if n:
            DeliveryEvent.objects.create(
                delivery=delivery,
                mailing=newsletter,
                esp_name="Postmark",
                dedupe_key=f"c{n}",
                event_type="clicked",
                timestamp=started,
                url="https://example.org/strategy",
            )

    page = manager.get(url("report", newsletter))

    text = page.content.decode()
    assert page.status_code == 200
    assert "Opens are approximate" in text
    assert "https://example.org/strategy" in text
    assert "<svg" in text and "<rect" in text
    assert "<script" not in text.split("<svg")[1].split("</svg>")[0]


def test_membership_staff_may_look_but_not_send(membership, newsletter):
    assert (
        membership.get(reverse("admin:mailings_mailing_change", args=[newsletter.pk])).status_code
        == 200
    )
    assert membership.post(url("send", newsletter)).status_code == 403
    assert membership.post(url("test", newsletter)).status_code == 403
    assert membership.post(url("action", newsletter, "cancel")).status_code == 403
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.DRAFT


def test_anonymous_visitors_are_sent_to_log_in(client, newsletter):
    response = client.get(url("progress", newsletter))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_superuser_can_send(client, superuser, newsletter, django_capture_on_commit_callbacks):
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url("send", newsletter))

    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SENDING


def test_delivery_list_is_read_only(manager, newsletter):
    delivery = DeliveryFactory(mailing=newsletter, supporter=SupporterFactory())

    assert manager.get(reverse("admin:mailings_delivery_changelist")).status_code == 200
    page = manager.get(reverse("admin:mailings_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
