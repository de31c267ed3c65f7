"""The API's reference page and the webhook endpoint's admin page, in headless Chromium.

Both run under the site's Content-Security-Policy with only our own static
files: the browser refuses nothing and fetches nothing from elsewhere.
"""

import os

import pytest

from crm.services import consent_grant
from project.api import webhooks
from project.api.models import Event, WebhookDelivery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Pictures for people to look at, when asked for: RALLY_SCREENSHOTS=/some/folder.
SHOTS = os.environ.get("RALLY_SCREENSHOTS", "")


def _shoot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def _refused(errors):
    return [error for error in errors if "Content Security Policy" in error or "Refused" in error]


def test_api_reference_works_under_the_csp_from_our_own_files(browser_page):
    """/api/docs shows every route from our static files; the browser refuses nothing."""
    page, base = browser_page.page, browser_page.base_url
    page.set_viewport_size({"width": 1280, "height": 900})
    response = page.goto(f"{base}/api/docs")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".opblock")
    page.wait_for_load_state("networkidle")

    paths = [
        text.replace("\u200b", "")
        for text in page.locator(".opblock-summary-path").all_inner_texts()
    ]
    assert "/api/supporters/batch" in paths
    assert page.get_by_text("Add or update up to 1,000 supporters").count() == 1
    assert _refused(browser_page.errors) == []
    assert browser_page.external_requests() == []
    _shoot(page, "api-docs.png")


def test_endpoint_page_shows_its_deliveries(browser_page, superuser, supporter, other_interest):
    """Staff see an endpoint's state, secret and latest deliveries with their errors."""
    endpoint = webhooks.webhook_endpoint_create(
        name="Waging Peace CRM",
        url="https://crm.wagingpeace.example/hooks/rally",
        events=[Event.SUBSCRIBED, Event.UNSUBSCRIBED_ALL],
    )
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    WebhookDelivery.objects.update(
        attempts=3, last_status_code=503, last_error="HTTP 503: Service Unavailable"
    )
    page, base = browser_page.page, browser_page.base_url
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")

    page.goto(f"{base}/admin/api/webhookendpoint/{endpoint.pk}/change/")
    assert page.get_by_text("HTTP 503: Service Unavailable").count() == 1
    assert page.get_by_text(endpoint.secret).count() == 1
    assert _refused(browser_page.errors) == []
    _shoot(page, "api-endpoint.png")
    page.goto(f"{base}/admin/api/apikey/add/")
    _shoot(page, "api-key-add.png")
    page.get_by_label("Name").fill("Waging Peace CRM")
    page.get_by_label("Read supporters and their subscriptions").check()
    page.get_by_role("button", name="Save", exact=True).click()
    assert page.locator("#api-key-text").input_value().startswith("rally_")
    assert _refused(browser_page.errors) == []
    _shoot(page, "api-key-created.png")
