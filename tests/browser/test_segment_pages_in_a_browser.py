"""Making a segment in Chromium: pick the kind first, dates the UK way, countries from a list."""

import pytest

from crm.models import Segment
from tests.factories import made_segments

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("maya")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def test_rules_show_only_for_a_rule_based_segment_and_save_uk_dates(browser_page, membership_user):
    page, base = browser_page.page, browser_page.base_url
    _log_in(page, base)
    page.goto(f"{base}/admin/crm/segment/add/")
    rules = page.locator("fieldset.segment-rules")
    assert rules.is_visible() is True

    page.get_by_label("Static list").check()
    assert rules.is_visible() is False
    page.get_by_label("Rule-based").check()
    assert rules.is_visible() is True

    page.get_by_label("Name:").fill("Joined in 2024, Ireland")
    page.locator("#id_joined_after").fill("01/02/2024")
    page.locator("#id_joined_before").fill("31/12/2024")
    page.locator("#id_countries_input").fill("Irel")
    page.locator("#id_countries_from").select_option("IE")
    page.locator("#id_countries_add").click()
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("was added successfully").wait_for()

    segment = made_segments().get()
    assert segment.rules == {
        "countries": ["IE"],
        "joined_after": "2024-02-01",
        "joined_before": "2024-12-31",
    }
    assert browser_page.errors == []


def test_a_static_list_made_in_the_browser_keeps_no_rules(browser_page, membership_user):
    page, base = browser_page.page, browser_page.base_url
    _log_in(page, base)
    page.goto(f"{base}/admin/crm/segment/add/")
    page.locator("#id_joined_after").fill("01/02/2024")  # typed, then changed their mind
    page.get_by_label("Static list").check()
    page.get_by_label("Name:").fill("Lobby day")
    page.get_by_role("button", name="Save and continue editing").click()
    page.get_by_text("was added successfully").wait_for()

    segment = made_segments().get()
    assert (segment.kind, segment.rules) == (Segment.Kind.STATIC, {})
    assert page.locator("fieldset.segment-rules").count() == 0
    assert page.get_by_role("link", name="Add supporters…").is_visible() is True
    assert browser_page.errors == []
