import pytest
from django.db import connections

from tests.conftest import CHROMIUM


class BrowserPage:
    """A Chromium page that remembers console errors and every URL it requested."""

    def __init__(self, page, base_url):
        self.page = page
        self.base_url = base_url
        self.errors = []
        self.requests = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def external_requests(self):
        from urllib.parse import urlsplit

        local = {"localhost", "127.0.0.1", "[::1]"}
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("about", "data") and urlsplit(url).hostname not in local
        ]


@pytest.fixture
def chromium(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test's thread; the tests
    # still read the database between steps, which Django allows only when told.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
        # Inside sync_playwright() code runs in another context, where Django
        # opens a database connection of its own: close it here, or the test
        # database cannot be dropped at the end.
        connections.close_all()


@pytest.fixture
def browser_page(chromium, live_server, settings):
    """A fresh page on the live server; emailed links point at it too."""
    settings.SITE_URL = live_server.url
    context = chromium.new_context(locale="en-GB")
    context.set_default_timeout(10_000)
    yield BrowserPage(context.new_page(), live_server.url)
    context.close()


@pytest.fixture
def phone_page(chromium, live_server, settings):
    settings.SITE_URL = live_server.url
    context = chromium.new_context(
        viewport={"width": 320, "height": 640}, device_scale_factor=2, is_mobile=True
    )
    context.set_default_timeout(10_000)
    yield BrowserPage(context.new_page(), live_server.url)
    context.close()
