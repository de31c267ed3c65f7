import pytest

from project.api.keys import api_key_create
from project.api.models import Scope
from tests.browser.conftest import browser_page, chromium  # noqa: F401  (the page tests' fixtures)

ALL_SCOPES = [scope.value for scope in Scope]


@pytest.fixture(autouse=True)
def _own_rate_counts(fresh_cache):
    """Each test counts API calls in a cache of its own."""


@pytest.fixture
def make_key(db):
    """Make an API key; return (key, headers to send it with)."""

    def make(scopes=ALL_SCOPES, partner=None, name="Integration"):
        key, text = api_key_create(name=name, scopes=scopes, partner=partner)
        return key, {"HTTP_AUTHORIZATION": f"Bearer {text}"}

    return make


@pytest.fixture
def full_key(make_key):
    return make_key()


@pytest.fixture
def auth(full_key):
    """Headers carrying a key with every scope."""
    return full_key[1]


def consent(**overrides):
    """Consent evidence as a client sends it."""
    return {
        "wording": "Yes, email me about the campaign to prevent atrocities.",
        "wording_version": "v3",
        "method": "signup_form",
        "source": "aegis-petition-2026",
        "given_at": "2026-11-30T10:00:00Z",
        **overrides,
    }


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every request and answers `statuses` in turn."""

    def __init__(self):
        import http.server
        import threading

        self.requests = []
        self.statuses = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rally"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    """A loopback receiver, which only RALLY_WEBHOOK_ALLOW_PRIVATE lets Rally reach."""
    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = True
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def endpoint(db, receiver):
    """An endpoint on the loopback receiver that hears every event."""
    from project.api.models import Event
    from project.api.webhooks import webhook_endpoint_create

    return webhook_endpoint_create(
        name="Campaign tools", url=receiver.url, events=[event.value for event in Event]
    )
