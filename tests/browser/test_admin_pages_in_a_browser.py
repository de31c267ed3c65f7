"""What staff see of a sent mailing in Chromium: no empty error box, no missing favicon."""

import datetime

import pytest
from django.utils import timezone

from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_sent_mailing_shows_no_empty_error_box_and_nothing_is_not_found(
    browser_page, superuser, supporter, interest
):
    mailing = MailingFactory(interests=[interest])
    started = timezone.now() - datetime.timedelta(minutes=5)
    Delivery.objects.create(
        mailing=mailing, supporter=supporter, status=Delivery.Status.SENT, sent_at=started
    )
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT, started_at=started, finished_at=started, recipient_count=1
    )
    page = browser_page.page
    not_found = []
    page.on("response", lambda response: response.status == 404 and not_found.append(response.url))
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{browser_page.base_url}/admin/mailings/mailing/{mailing.pk}/change/")
    page.get_by_role("heading", name="Status: Sent").wait_for()

    outage_box = page.locator('[data-progress="esp_outage"]')
    assert outage_box.count() == 1
    assert outage_box.is_visible() is False
    assert [box for box in page.locator(".errornote").all() if box.is_visible()] == []
    page.wait_for_load_state("networkidle")
    assert not_found == []
