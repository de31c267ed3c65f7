"""Staff revoke a supporter's links from the admin page, in headless Chromium."""

import pytest

from mailings import tokens

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_revoke_button_on_the_supporter_page_kills_old_links(browser_page, supporter, superuser):
    old_link = f"{browser_page.base_url}/preferences/{tokens.make_preferences_token(supporter)}/"
    page = browser_page.page
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{browser_page.base_url}/admin/crm/supporter/{supporter.pk}/change/")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke this supporter's email links").click()

    page.get_by_text("Every email link sent to this supporter no longer works.").wait_for()
    supporter.refresh_from_db()
    assert supporter.link_version == 2
    assert page.goto(old_link).status == 404
    assert browser_page.external_requests() == []
