"""An A/B-tested mailing's page and report, and a guarded mailing's page, in Chromium.

Each page loads its own stylesheet and nothing else from anywhere, under the
admin's Content-Security-Policy. Set RALLY_SCREENSHOTS to a folder to keep
the pictures (1280 px wide).
"""

import os
from pathlib import Path

import pytest
from django.utils import timezone

from mailings.models import Delivery, Mailing
from tests.abtests.conftest import ab_mailing, drain, make_readers, start
from tests.factories import MailingFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def _picture(page, name, tmp_path):
    folder = Path(os.environ.get("RALLY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_ab_test_and_guard_pages_load_nothing_refused(
    browser_page, superuser, interest, postmark_esp, django_capture_on_commit_callbacks, tmp_path
):
    make_readers(interest, 400)
    mailing = ab_mailing(interest, variants=3, percent=60, hours=4)
    start(mailing, superuser, django_capture_on_commit_callbacks)
    drain(mailing)
    now = timezone.now()
    for variant, opens, clicks in zip(
        mailing.variants.all(), (41, 48, 37), (9, 21, 6), strict=True
    ):
        rows = Delivery.objects.filter(mailing=mailing, variant=variant).values_list(
            "pk", flat=True
        )
        Delivery.objects.filter(pk__in=list(rows[:opens])).update(opened_at=now)
        Delivery.objects.filter(pk__in=list(rows[:clicks])).update(clicked_at=now)
    guarded = MailingFactory(name="Partner list welcome", interests=[interest])
    Mailing.objects.filter(pk=guarded.pk).update(
        status=Mailing.Status.PAUSED,
        recipient_count=12_400,
        started_at=now,
        guard_tripped="complaints",
        last_error="The deliverability guard paused sending: 3 of the 1,000 messages sent "
        "complained (0.3%; the limit is 0.1%). People are marking this mailing as spam. Check "
        "that everyone in the audience agreed to hear from you about this topic, then resume "
        "(the guard will not pause this mailing again) or cancel.",
    )
    draft = ab_mailing(interest, variants=2, percent=20)
    page, base = browser_page.page, browser_page.base_url
    page.set_viewport_size({"width": 1280, "height": 900})
    _log_in(page, base)

    for name, path in (
        ("ab-mailing-page", f"/admin/mailings/mailing/{mailing.pk}/change/"),
        ("ab-report", f"/admin/mailings/mailing/{mailing.pk}/report/"),
        ("guard-paused", f"/admin/mailings/mailing/{guarded.pk}/change/"),
        ("ab-draft-form", f"/admin/mailings/mailing/{draft.pk}/change/"),
    ):
        response = page.goto(base + path)
        assert response.status == 200
        _picture(page, name, tmp_path)

    assert browser_page.errors == []
    assert browser_page.external_requests() == []
    assert any(url.endswith("/static/mailings/abtests.css") for url in browser_page.requests)
