"""In Chromium: from a mailing's report, the people who clicked a link become a segment."""

import datetime

import pytest
from django.utils import timezone

from mailings.models import Delivery, DeliveryEvent, Mailing
from tests.factories import MailingFactory, SupporterFactory, made_segments

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PETITION = "https://example.org/petition"


def test_a_reports_clickers_become_a_segment_of_the_right_size(
    browser_page, django_user_model, membership_user, interest
):
    mailing = MailingFactory(name="Autumn briefing", interests=[interest])
    started = timezone.now() - datetime.timedelta(hours=3)
    for n in range(7):
        delivery = Delivery.objects.create(
            mailing=mailing,
            supporter=SupporterFactory(email=f"reader{n}@example.org"),
            status=Delivery.Status.SENT,
            sent_at=started,
            opened_at=started + datetime.timedelta(minutes=10),
            clicked_at=started + datetime.timedelta(minutes=20) if n < 3 else None,
        )
        if n < 3:
            DeliveryEvent.objects.create(
                delivery=delivery,
                mailing=mailing,
                esp_name="Postmark",
                dedupe_key=f"click-{n}",
                event_type="clicked",
                timestamp=started + datetime.timedelta(minutes=20),
                url=PETITION,
            )
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT, started_at=started, finished_at=started, recipient_count=7
    )
    page = browser_page.page
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill(membership_user.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{browser_page.base_url}/admin/mailings/mailing/{mailing.pk}/report/")
    page.get_by_role("link", name="See the 3 people who clicked this link").click()
    page.get_by_role(
        "heading", name=f"People who clicked {PETITION} in “Autumn briefing”"
    ).wait_for()
    assert page.locator(".rally-people-table tbody tr").count() == 3
    page.get_by_role("button", name="Make a segment of these people").click()

    page.get_by_text("made, with 3 supporter(s)").wait_for()
    segment = made_segments().get()
    assert page.url.endswith(f"/admin/crm/segment/{segment.pk}/change/")
    assert segment.size == 3
    # The segment page counts its members afresh.
    live_count = page.locator(".field-live_count .readonly").inner_text()
    assert live_count.split()[0] == "3"
    assert browser_page.errors == []
