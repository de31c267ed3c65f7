"""A new supporter's whole journey in headless Chromium, from sign-up to undo."""

import contextlib
import http.server
import re
import threading

import pytest
from django.core import mail

from crm.models import ConsentRecord, Supporter
from crm.services import supporter_get
from tests import factories

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("tasks_run_now", "fresh_cache"),
]


@pytest.fixture
def topics(db):
    factories.CampaignInterestFactory(
        slug="r2p",
        name="Responsibility to Protect",
        description="The UK's duty to help prevent genocide and mass atrocities.",
        position=1,
    )
    factories.CampaignInterestFactory(
        slug="events",
        name="Events and actions",
        description="Vigils, lobby days and letters to your MP.",
        position=2,
    )


@contextlib.contextmanager
def charity_site(body):
    """Serve `body` from another site on loopback (127.0.0.1 is not localhost)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def emailed_link(pattern):
    message = mail.outbox[-1]
    return re.search(pattern, message.body).group(0)


def test_sign_up_confirm_manage_unsubscribe_all_and_undo(browser_page, topics):
    page = browser_page.page
    page.goto(f"{browser_page.base_url}/join/")
    page.get_by_label("Email address").fill("nia@example.org")
    page.get_by_label("First name").fill("Nia")
    page.get_by_label("Postcode").fill("e8 1dy")
    page.get_by_label("Responsibility to Protect").check()
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    assert Supporter.objects.count() == 0

    page.goto(emailed_link(rf"{re.escape(browser_page.base_url)}/join/confirm/\S+/"))
    page.get_by_role("button", name="Yes, sign me up").click()
    page.get_by_role("heading", name="Thank you, you're signed up").wait_for()
    nia = supporter_get("nia@example.org")
    assert nia.subscriptions.get().interest.slug == "r2p"

    page.get_by_role("link", name="Manage your email choices", exact=True).click()
    page.get_by_role("heading", name="Your email choices").wait_for()
    assert page.get_by_label("Responsibility to Protect").is_checked()
    assert not page.get_by_label("Events and actions").is_checked()
    assert page.get_by_label("Postcode").input_value() == "E8 1DY"

    page.get_by_label("Events and actions").check()
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("You will now hear about: Events and actions.").wait_for()

    page.get_by_role("link", name="Unsubscribe from all email").click()
    page.get_by_role("button", name="Yes, unsubscribe me from all email").click()
    page.get_by_role("heading", name="You're unsubscribed from all email").wait_for()
    nia.refresh_from_db()
    assert nia.status == Supporter.Status.UNSUBSCRIBED

    page.get_by_role("button", name="Undo: subscribe me again").click()
    page.get_by_role("heading", name="Welcome back").wait_for()
    nia.refresh_from_db()
    assert nia.status == Supporter.Status.ACTIVE
    assert set(
        nia.subscriptions.filter(status="subscribed").values_list("interest__slug", flat=True)
    ) == {"r2p", "events"}
    assert list(
        ConsentRecord.objects.filter(supporter=nia)
        .order_by("created_at", "id")
        .values_list("method", "action")
    ) == [
        ("signup_form", "granted"),
        ("email_link", "granted"),
        ("email_link", "withdrawn"),
        ("email_link", "granted"),
        ("email_link", "granted"),
        ("email_link", "granted"),
    ]

    assert browser_page.errors == []
    assert browser_page.external_requests() == []
    assert any(url.endswith("/static/supporters/rally.css") for url in browser_page.requests)


def test_keyboard_order_and_labels_on_the_sign_up_form(browser_page, topics):
    page = browser_page.page
    page.goto(f"{browser_page.base_url}/join/")
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert order == [
        "Skip to main content",
        "id_email",
        "id_first_name",
        "id_last_name",
        "id_postcode",
        "interest-r2p",
        "interest-events",
        "Sign up",
    ]
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('main input:not([type=hidden])')]
            .filter(el => !el.closest('[aria-hidden=true]') && el.labels.length === 0)
            .map(el => el.name)"""
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.lang") == "en-GB"


CONTRAST = """() => {
  const lum = c => {
    const [r, g, b] = c.match(/[0-9.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = el => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (!c.endsWith(', 0)') && c !== 'transparent') return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const ratio = el => {
    const [a, b] = [lum(getComputedStyle(el).color), lum(bg(el))];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  return [...document.querySelectorAll('h1, h2, p, label, legend, a, button, li')]
    .filter(el => el.offsetParent !== null && el.textContent.trim())
    .map(el => [el.tagName + ': ' + el.textContent.trim().slice(0, 30), ratio(el)])
    .filter(([, r]) => r < 4.5);
}"""


def test_text_contrast_meets_wcag_aa(browser_page, topics, supporter):
    from mailings import tokens

    page = browser_page.page
    for path in ("/join/", f"/preferences/{tokens.make_preferences_token(supporter)}/"):
        page.goto(f"{browser_page.base_url}{path}")
        assert page.evaluate(CONTRAST) == []


def test_pages_fit_a_phone_screen(phone_page, topics, supporter):
    from mailings import tokens

    page = phone_page.page
    for path in (
        "/join/",
        "/preferences/",
        f"/preferences/{tokens.make_preferences_token(supporter)}/",
    ):
        page.goto(f"{phone_page.base_url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        box = page.get_by_role("button").first.bounding_box()
        assert box["height"] >= 24  # WCAG 2.2 target size (minimum)
    assert phone_page.errors == []


def test_sign_up_form_works_embedded_in_another_site(browser_page, topics):
    """A cross-site frame gets no cookies, so the form must work without any."""
    page = browser_page.page
    embed = f'<iframe src="{browser_page.base_url}/join/" width="600" height="900"></iframe>'
    with charity_site(embed) as charity:
        page.goto(charity)
        frame = page.frame_locator("iframe")
        frame.get_by_label("Email address").fill("framed@example.org")
        frame.get_by_label("Events and actions").check()
        frame.get_by_role("button", name="Sign up").click()
        frame.get_by_role("heading", name="Check your email").wait_for()
        assert mail.outbox[-1].to == ["framed@example.org"]
        assert browser_page.errors == []
