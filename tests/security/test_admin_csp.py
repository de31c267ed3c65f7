"""The admin sends a Content-Security-Policy that runs only the admin's own scripts.

A link or text that slips into an admin page (a clicked URL on the report, a
name in a list) cannot run script: no inline script, no inline handler, no
javascript: URL, no plugins, no <base>, no framing, no posting elsewhere. The
supporter pages keep the policies they set themselves.
"""

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import DeliveryEvent, Mailing
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


def directives(response):
    policy = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def test_admin_pages_forbid_inline_script_framing_and_foreign_forms(client, superuser):
    """Scripts only from the site itself, nothing inline, no frames, no <base>, no plugins."""
    client.force_login(superuser)

    policy = directives(client.get(reverse("admin:crm_supporter_changelist")))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src-attr"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_login_page_has_the_policy_too(client):
    """The page where a password is typed runs no script it did not serve itself."""
    assert directives(client.get(reverse("admin:login")))["script-src"] == ["'self'"]


def test_report_with_a_javascript_click_has_no_executable_link_and_a_strict_policy(
    client, superuser, newsletter
):
    """The report shows a javascript: click as text, under a policy that would block it."""
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENT, recipient_count=1, started_at=timezone.now()
    )
    delivery = DeliveryFactory(mailing=newsletter, status="sent", clicked_at=timezone.now())
    DeliveryEvent.objects.create(
        delivery=delivery,
        mailing=newsletter,
        esp_name="Postmark",
        dedupe_key="click",
        event_type="clicked",
        timestamp=timezone.now(),
        url="javascript:alert(document.cookie)",
    )
    client.force_login(superuser)

    response = client.get(reverse("admin:mailings_mailing_report", args=[newsletter.pk]))

    html = response.content.decode()
    assert 'href="javascript:' not in html.lower()
    assert "javascript:alert(document.cookie)" in html
    assert "<script>" not in html
    assert directives(response)["script-src"] == ["'self'"]


def test_preview_shows_the_emails_styles_only_in_its_sandboxed_frames(
    client, superuser, newsletter
):
    """The email keeps its <style> and images in its frames; the preview page keeps the admin's."""
    client.force_login(superuser)

    page = directives(client.get(reverse("admin:mailings_mailing_preview", args=[newsletter.pk])))
    frame = directives(
        client.get(reverse("admin:mailings_mailing_preview_frame", args=[newsletter.pk]))
    )

    assert page["style-src"] == ["'self'"]
    assert page["script-src"] == ["'self'"]
    assert "'unsafe-inline'" in frame["style-src"]
    assert "script-src" not in frame and frame["default-src"] == ["'none'"]
    assert "sandbox" in frame


def test_supporter_pages_keep_their_own_policy(client, settings):
    """The sign-up form may still be framed by the charity's site; the admin's policy stays out."""
    settings.RALLY_SIGNUP_FRAME_ANCESTORS = ["https://www.example-charity.org.uk"]

    policy = directives(client.get("/join/"))

    assert policy["frame-ancestors"] == ["https://www.example-charity.org.uk"]
    assert policy["default-src"] == ["'none'"]
