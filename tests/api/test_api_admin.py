"""Staff make keys and endpoints in the admin: shown once, scopes no wider than their own."""

import pytest

from project.api.keys import key_for
from project.api.models import ApiKey, WebhookDelivery, WebhookEndpoint
from project.api.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db


def test_new_key_is_shown_once_and_works(client, superuser, partner):
    client.force_login(superuser)
    response = client.post(
        "/admin/api/apikey/add/",
        {"name": "Waging Peace CRM", "scopes": ["supporters:read"], "partner": partner.pk},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    text = response.context["text"]
    assert text.startswith("rally_")
    assert text in response.content.decode()
    key = ApiKey.objects.get()
    assert (key.scopes, key.partner, key.created_by) == (["supporters:read"], partner, superuser)
    assert key_for(text) == key
    page = client.get(f"/admin/api/apikey/{key.pk}/change/").content.decode()
    assert text not in page
    assert f"rally_{key.prefix}_…" in page


def test_campaign_manager_cannot_give_a_key_more_than_they_may_do(client, campaign_user):
    """Campaign managers read supporters but cannot change them: no write scope for their keys."""
    client.force_login(campaign_user)
    form = client.get("/admin/api/apikey/add/").content.decode()
    assert "supporters:read" in form
    assert "supporters:write" not in form
    response = client.post(
        "/admin/api/apikey/add/", {"name": "Sneaky", "scopes": ["supporters:write"]}
    )
    assert response.status_code == 200
    assert "not one of the available choices" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_membership_staff_cannot_manage_integrations(client, membership_user):
    client.force_login(membership_user)
    assert client.get("/admin/api/apikey/").status_code == 403
    assert client.get("/admin/api/webhookendpoint/").status_code == 403


def test_paused_endpoint_is_announced_on_the_list_and_resumed(client, superuser):
    from django.utils import timezone

    hook = webhook_endpoint_create(name="Aegis", url="https://aegis.example/h", events=["x"])
    WebhookEndpoint.objects.filter(pk=hook.pk).update(
        paused_at=timezone.now(), consecutive_failures=20
    )
    WebhookDelivery.objects.create(
        endpoint=hook,
        event="supporter.subscribed",
        event_id="consent-1",
        occurred_at=timezone.now(),
    )
    client.force_login(superuser)
    listing = client.get("/admin/api/webhookendpoint/", follow=True).content.decode()
    assert "“Aegis” is paused" in listing
    client.post(
        "/admin/api/webhookendpoint/",
        {"action": "resume", "_selected_action": [hook.pk]},
    )
    hook.refresh_from_db()
    assert hook.is_paused is False


def test_endpoint_must_be_https(client, superuser, settings):
    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(superuser)
    response = client.post(
        "/admin/api/webhookendpoint/add/",
        {"name": "Plain", "url": "http://partner.example/h", "events": ["supporter.erased"]},
    )
    assert "Use an https:// address" in response.content.decode()
    created = client.post(
        "/admin/api/webhookendpoint/add/",
        {
            "name": "Secure",
            "url": "https://partner.example/h",
            "events": ["supporter.erased"],
            "is_active": "on",
        },
    )
    assert created.status_code == 302
    hook = WebhookEndpoint.objects.get()
    assert len(hook.secret) == 64
    assert hook.created_by == superuser
