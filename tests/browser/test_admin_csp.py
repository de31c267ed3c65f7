"""The admin's pages work in headless Chromium under their Content-Security-Policy.

Every script, style and handler of the main pages comes from a static file, so
the browser refuses nothing: no "Refused to …" in the console, and the
scripts that matter (live progress, "are you sure?" questions) still run.
"""

import pytest
from django.utils import timezone

from crm.models import Segment
from mailings.models import DeliveryEvent, Mailing
from tests.factories import DeliveryFactory, MailingFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def _violations(errors):
    return [error for error in errors if "Content Security Policy" in error or "Refused" in error]


def test_main_admin_pages_raise_no_csp_violations(
    browser_page, superuser, supporter, interest, newsletter
):
    """Lists, change pages, the mailing page while sending, preview, report, import and segments."""
    sending = MailingFactory(name="Sending now", interests=[interest])
    Mailing.objects.filter(pk=sending.pk).update(
        status=Mailing.Status.SENDING, recipient_count=2, started_at=timezone.now()
    )
    DeliveryFactory(mailing=sending, supporter=supporter, status="queued")
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
        url="javascript:document.title='owned'",
    )
    segment = Segment.objects.create(name="Everyone")
    page, base = browser_page.page, browser_page.base_url
    _log_in(page, base)

    pages = [
        "/admin/",
        "/admin/crm/supporter/",
        f"/admin/crm/supporter/{supporter.pk}/change/",
        f"/admin/crm/supporter/{supporter.pk}/history/",
        "/admin/crm/supporter/import/",
        f"/admin/crm/segment/{segment.pk}/change/",
        "/admin/mailings/mailing/",
        f"/admin/mailings/mailing/{newsletter.pk}/change/",
        f"/admin/mailings/mailing/{newsletter.pk}/preview/",
        f"/admin/mailings/mailing/{newsletter.pk}/report/",
        "/admin/mailings/mailing/add/",
        "/admin/auth/user/",
    ]
    for path in pages:
        response = page.goto(f"{base}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        assert _violations(browser_page.errors) == [], path

    # The report lists the javascript: click as text; nothing on the page links to it.
    page.goto(f"{base}/admin/mailings/mailing/{newsletter.pk}/report/")
    assert page.locator("a[href^='javascript' i]").count() == 0
    assert page.get_by_text("javascript:document.title='owned'").count() == 1

    # The mailing page's progress script runs: it polls and shows the new count.
    page.goto(f"{base}/admin/mailings/mailing/{sending.pk}/change/")
    DeliveryFactory(mailing=sending, status="sent", sent_at=timezone.now())
    page.locator("[data-progress='sent']", has_text="1").wait_for()

    # "Cancel mailing" still asks first, and declining changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel mailing").click()
    sending.refresh_from_db()
    assert sending.status == Mailing.Status.SENDING
    assert _violations(browser_page.errors) == []
