"""A superuser sets up two-factor login in headless Chromium, under the admin's CSP."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.security.test_staff_two_factor import code_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_superuser_scans_the_qr_code_and_gets_in(browser_page, superuser, settings):
    settings.RALLY_STAFF_2FA = "superusers"
    page, base = browser_page.page, browser_page.base_url
    page.goto(f"{base}/admin/crm/supporter/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()

    page.get_by_text("Set up two-factor login").wait_for()
    qr = page.get_by_role("img", name="QR code to add Rally to your authenticator app")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0") is True
    device = TOTPDevice.objects.get(user=superuser)
    page.get_by_label("6-digit code").fill(code_for(device))
    page.get_by_role("button", name="Confirm and log in").click()

    page.wait_for_url(f"{base}/admin/crm/supporter/")
    assert [error for error in browser_page.errors if "Refused" in error] == []


def test_locked_out_login_shows_why(browser_page, superuser):
    page, base = browser_page.page, browser_page.base_url
    page.goto(f"{base}/admin/login/")
    for _ in range(6):
        page.get_by_label("Username").fill("root")
        page.get_by_label("Password").fill("not it")
        page.get_by_role("button", name="Log in").click()
        if page.get_by_text("Too many wrong passwords").count():
            break

    page.get_by_text("Too many wrong passwords").wait_for()
    assert [error for error in browser_page.errors if "Refused" in error] == []
