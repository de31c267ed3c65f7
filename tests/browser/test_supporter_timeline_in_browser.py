"""A supporter's timeline in Chromium shows a mailing they clicked."""

import datetime

import pytest
from django.utils import timezone

from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(browser_page):
    page = browser_page.page
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    return page


def test_the_timeline_shows_a_mailing_they_clicked(browser_page, superuser, supporter, interest):
    sent_at = timezone.now() - datetime.timedelta(days=2)
    mailing = MailingFactory(
        name="Autumn briefing", interests=[interest], status=Mailing.Status.SENT, started_at=sent_at
    )
    Delivery.objects.create(
        mailing=mailing,
        supporter=supporter,
        status=Delivery.Status.SENT,
        sent_at=sent_at,
        delivered_at=sent_at + datetime.timedelta(minutes=1),
        opened_at=sent_at + datetime.timedelta(hours=1),
        last_opened_at=sent_at + datetime.timedelta(hours=1),
        clicked_at=sent_at + datetime.timedelta(hours=1, minutes=2),
        last_clicked_at=sent_at + datetime.timedelta(hours=1, minutes=2),
    )
    page = log_in(browser_page)

    page.goto(f"{browser_page.base_url}/admin/crm/supporter/{supporter.pk}/change/")

    entry = page.locator(".timeline-entry", has_text="Autumn briefing")
    entry.get_by_text("clicked", exact=True).wait_for()
    assert entry.get_by_text("opened", exact=True).is_visible() is True
    assert page.locator(".supporter-figures").get_by_text("100%").is_visible() is True
    entry.get_by_role("link", name="Report").click()
    page.get_by_role("heading", name="Report: Autumn briefing").wait_for()
    assert browser_page.errors == []
    assert browser_page.external_requests() == []
