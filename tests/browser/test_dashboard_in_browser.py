"""The admin home in Chromium: real charts, live progress, nothing refused or fetched from afar."""

import datetime

import pytest
from django.utils import timezone

from crm.services import supporter_unsubscribe
from mailings.models import Mailing
from tests.factories import DeliveryFactory, MailingFactory, SupporterFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _own_cache(fresh_cache):
    """The dashboard counts its figures afresh for this test."""


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def test_dashboard_draws_its_charts_with_tables_and_follows_sending(
    browser_page, superuser, interest, partner
):
    browser_page.page.set_viewport_size({"width": 1280, "height": 900})
    now = timezone.now()
    for weeks_ago in (0, 0, 1, 3, 8):
        SupporterFactory(created_at=now - datetime.timedelta(weeks=weeks_ago), partner=partner)
    leaver = SupporterFactory(subscribed_to=[interest])
    supporter_unsubscribe(supporter=leaver, method="email_link")
    sent = MailingFactory(name="Autumn briefing")
    Mailing.objects.filter(pk=sent.pk).update(status="sent", started_at=now, finished_at=now)
    DeliveryFactory(mailing=sent, supporter=leaver, status="sent", sent_at=now, opened_at=now)
    sending = MailingFactory(name="Emergency appeal")
    Mailing.objects.filter(pk=sending.pk).update(
        status="sending", started_at=now, recipient_count=2
    )
    DeliveryFactory(mailing=sending, status="sent", sent_at=now)
    DeliveryFactory(mailing=sending, status="queued")
    page, base = browser_page.page, browser_page.base_url

    _log_in(page, base)
    page.get_by_text("1 of 2 sent (50%)").wait_for()
    page.wait_for_load_state("networkidle")

    charts = page.locator("figure.rally-chart")
    assert charts.count() == 4
    growth = charts.filter(has_text="Supporters joined and left per week")
    assert growth.locator("svg rect").count() >= 5
    assert growth.locator("svg .y-ticks text").count() >= 2
    hidden = growth.locator(".visually-hidden")
    table = hidden.locator("table")
    assert (
        table.locator("caption").inner_text()
        == "Supporters joined and left per week, last 26 weeks"
    )
    assert table.locator("tbody tr").count() == 26
    # Read by screen readers, clipped out of sight for everyone else.
    assert hidden.evaluate("t => getComputedStyle(t).clip") == "rect(0px, 0px, 0px, 0px)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.locator(".rally-health-row").count() == 2
    assert (
        page.get_by_role("link", name="Autumn briefing")
        .get_attribute("href")
        .endswith(f"/mailings/mailing/{sent.pk}/report/")
    )
    assert page.locator("#nav-sidebar").get_by_role("link", name="Supporters").count() >= 1
    assert browser_page.errors == []
    assert browser_page.external_requests() == []
