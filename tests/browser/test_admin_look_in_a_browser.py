"""Rally's look on the admin (crm/static/crm/admin-site.css) in Chromium, light and dark."""

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _luminance(css_colour):
    """Relative luminance (WCAG) of an `rgb(r, g, b)` or `rgba(...)` colour."""
    red, green, blue = (float(part) / 255 for part in re.findall(r"[\d.]+", css_colour)[:3])

    def linear(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


# The text's colour, and the first colour painted behind it (rows, cards, the page).
TEXT_AND_BEHIND = """element => {
    const painted = (e) => getComputedStyle(e).backgroundColor !== "rgba(0, 0, 0, 0)";
    let behind = element;
    while (behind.parentElement && !painted(behind)) behind = behind.parentElement;
    return [getComputedStyle(element).color, getComputedStyle(behind).backgroundColor];
}"""


def _contrast(page, selector):
    """Contrast ratio (WCAG) of the text of `selector` against what is painted behind it."""
    colours = page.locator(selector).first.evaluate(TEXT_AND_BEHIND)
    lighter, darker = sorted((_luminance(colour) for colour in colours), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()


def test_the_header_shows_rallys_mark_and_name(browser_page, superuser):
    page, base = browser_page.page, browser_page.base_url
    _log_in(page, base)

    branding = page.locator("#site-name a")
    assert branding.inner_text().strip() == "Rally"
    mark = branding.locator("img.rally-mark")
    assert mark.evaluate("img => img.complete && img.naturalWidth > 0") is True
    assert browser_page.external_requests() == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_stays_readable_in_light_and_dark_mode(browser_page, superuser, supporter, scheme):
    """Body text, links and help text keep WCAG AA contrast (4.5:1) on the page, either way."""
    page, base = browser_page.page, browser_page.base_url
    page.emulate_media(color_scheme=scheme)
    _log_in(page, base)
    page.goto(f"{base}/admin/crm/supporter/")

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (_luminance(background) < 0.05) is (scheme == "dark")
    assert _contrast(page, "#result_list tbody td") >= 4.5
    assert _contrast(page, "#result_list tbody a") >= 4.5
    assert _contrast(page, "#searchbar_helptext") >= 4.5


def test_the_theme_toggle_turns_dark_mode_on_whatever_the_system_says(
    browser_page, superuser, supporter
):
    page, base = browser_page.page, browser_page.base_url
    page.emulate_media(color_scheme="light")
    _log_in(page, base)
    page.goto(f"{base}/admin/crm/supporter/")

    # The toggle goes auto -> light -> dark (django/contrib/admin/static/admin/js/theme.js).
    while page.evaluate("document.documentElement.dataset.theme") != "dark":
        page.locator("#header .theme-toggle").click()

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _luminance(background) < 0.05
    assert _contrast(page, "#result_list tbody td") >= 4.5


def test_the_qr_code_keeps_a_white_margin_in_dark_mode(browser_page, superuser, settings):
    """Phone cameras read a QR code only with a light quiet zone; a dark page must not remove it."""
    settings.RALLY_STAFF_2FA = "superusers"
    page, base = browser_page.page, browser_page.base_url
    page.emulate_media(color_scheme="dark")
    _log_in(page, base)

    qr = page.get_by_role("img", name="QR code to add Rally to your authenticator app")
    style = qr.evaluate(
        "img => [getComputedStyle(img).backgroundColor, getComputedStyle(img).paddingTop]"
    )
    assert style[0] == "rgb(255, 255, 255)"
    assert float(style[1].removesuffix("px")) >= 8
    assert _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor")) < 0.05
