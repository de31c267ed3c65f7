"""No supporter link token reaches the logs; the route it was on still does.

Django logs the path of every 4xx answer (django.request, django.security.csrf)
and runserver logs every request line (django.server). Whatever a record holds,
the console handler of settings.LOGGING writes it, in plain text and in JSON,
with "<token>" where a link's token was: a token in a log opens a supporter's
preference centre for whoever reads the log.
"""

import io
import json
import logging
import logging.config

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from crm.services import supporter_revoke_links
from mailings import tokens
from project.logging import without_link_tokens

pytestmark = pytest.mark.django_db

TAMPERED = "MTIz:1u2v3w:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.fixture(params=["plain", "json"])
def console(request, settings):
    """Collect what the configured console handler writes, in the plain or JSON format."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    formatter = logging.config.DictConfigurator(settings.LOGGING).configure_formatter(
        dict(settings.LOGGING["formatters"][request.param])
    )
    output = io.StringIO()
    saved_stream, saved_formatter = handler.setStream(output), handler.formatter
    handler.setFormatter(formatter)
    yield output
    handler.setStream(saved_stream)
    handler.setFormatter(saved_formatter)


def messages(output):
    """Return the logged lines, or for JSON the message and exception of each."""
    text = output.getvalue()
    try:
        entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    except json.JSONDecodeError:
        return text
    return "\n".join(f"{e['message']} {e.get('exception', '')}" for e in entries) or text


@pytest.fixture
def revoked_links(supporter, r2p_mailing):
    """Real tokens for each kind of link, which no longer work."""
    links = {
        "preferences": tokens.make_preferences_token(supporter),
        "unsubscribe": tokens.make_unsubscribe_token(supporter, r2p_mailing),
        "data": tokens.make_data_download_token(supporter),
    }
    supporter_revoke_links(supporter=supporter)
    supporter.refresh_from_db()
    links["working unsubscribe"] = tokens.make_unsubscribe_token(supporter, r2p_mailing)
    return links


def test_bad_link_answers_log_the_route_without_the_token(console, revoked_links):
    client = Client(raise_request_exception=False)
    preferences, unsubscribe, data, working = revoked_links.values()
    answers = [
        client.get(f"/preferences/{preferences}/").status_code,
        client.get(f"/preferences/{preferences}/unsubscribe-all/").status_code,
        client.post(f"/preferences/{preferences}/my-data/").status_code,
        client.post(f"/preferences/{TAMPERED}/resubscribe/").status_code,
        client.get(f"/unsubscribe/{unsubscribe}/").status_code,
        client.put(f"/unsubscribe/{unsubscribe}/").status_code,
        client.get(f"/my-data/{data}/").status_code,
        client.get(f"/join/confirm/{TAMPERED}/").status_code,
        # A body that cannot be read, on a link that works: 400.
        client.post(
            f"/unsubscribe/{working}/", "junk", content_type="multipart/form-data"
        ).status_code,
        # No CSRF token: 403.
        Client(enforce_csrf_checks=True).post(f"/preferences/{preferences}/").status_code,
    ]

    assert answers == [404, 404, 404, 404, 404, 405, 404, 404, 400, 403]
    logged = messages(console)
    for token in (preferences, unsubscribe, data, working, TAMPERED):
        assert token not in logged
    for route in (
        "Not Found: /preferences/<token>/",
        "Not Found: /preferences/<token>/unsubscribe-all/",
        "Not Found: /preferences/<token>/my-data/",
        "Not Found: /preferences/<token>/resubscribe/",
        "Not Found: /unsubscribe/<token>/",
        "Method Not Allowed (PUT): /unsubscribe/<token>/",
        "Not Found: /my-data/<token>/",
        "Not Found: /join/confirm/<token>/",
        "Bad request (Unable to parse request body): /unsubscribe/<token>/",
        "Forbidden (CSRF cookie not set.): /preferences/<token>/",
    ):
        assert route in logged


def test_request_lines_tracebacks_and_requests_lose_the_token(console, rf):
    """runserver's request line, an exception's text and the request a record carries."""
    seen = []
    later_handler = logging.Handler()  # runs after the console handler
    later_handler.emit = seen.append
    logging.getLogger().addHandler(later_handler)
    request = rf.get(f"/preferences/{TAMPERED}/", HTTP_REFERER=f"/join/confirm/{TAMPERED}/")
    assert TAMPERED in request.headers["Referer"]
    try:
        logging.getLogger("django.server").info(
            '"%s" %s %s', f"GET /unsubscribe/{TAMPERED}/ HTTP/1.1", "404", "1234"
        )
        try:
            raise ValueError(f"no page at https://rally.example.org/my-data/{TAMPERED}/")
        except ValueError:
            logging.getLogger("mailings").exception("Could not answer")
        logging.getLogger("django.request").warning("Gone", extra={"request": request})
    finally:
        logging.getLogger().removeHandler(later_handler)

    logged = messages(console)
    assert TAMPERED not in logged
    assert '"GET /unsubscribe/<token>/ HTTP/1.1" 404' in logged
    assert "ValueError: no page at https://rally.example.org/my-data/<token>/" in logged
    carried = seen[-1].request
    assert carried.path == "/preferences/<token>/"
    assert TAMPERED not in f"{carried!r} {carried.build_absolute_uri()}"
    assert carried.headers["Referer"] == "/join/confirm/<token>/"
    assert request.path == f"/preferences/{TAMPERED}/"  # the live request is left alone


def supporter_link_routes(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from supporter_link_routes(pattern.url_patterns, prefix)
        elif isinstance(pattern, URLPattern) and "token" in pattern.pattern.converters:
            yield pattern.name


def test_every_link_route_with_a_token_is_covered():
    """A new page taking a token in its path is stripped too, or this fails."""
    names = sorted(supporter_link_routes())
    assert names == [
        "action-confirm",
        "data-download",
        "preferences",
        "preferences-data",
        "preferences-resubscribe",
        "preferences-unsubscribe-all",
        "signup-confirm",
        "unsubscribe",
    ]
    for name in names:
        path = reverse(name, kwargs={"token": TAMPERED})
        assert without_link_tokens(f"Not Found: {path}") == "Not Found: " + path.replace(
            TAMPERED, "<token>"
        )
    assert without_link_tokens("POST /preferences/ HTTP/1.1") == "POST /preferences/ HTTP/1.1"


def test_celery_workers_log_through_the_same_filters():
    """Celery leaves logging to settings.LOGGING, so workers' records lose tokens too.

    Without a receiver of setup_logging, a worker replaces the root logger's
    handlers with its own, which know nothing of link tokens.
    """
    from celery.signals import setup_logging

    import project.celery  # noqa: F401  (connects the receiver)

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        answers = setup_logging.send(
            sender=None, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        assert answers, "nothing configures logging for Celery: it would use its own handlers"
        console = next(h for h in root.handlers if h.get_name() == "console")
        assert any(type(f).__name__ == "LinkTokenFilter" for f in console.filters)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)


def test_error_reports_to_sentry_lose_the_token():
    """An error report's URL, query and Referer keep the route, not the token."""
    from project.logging import sentry_event_without_link_tokens

    event = {
        "request": {
            "url": f"https://rally.example.org/preferences/{TAMPERED}/",
            "query_string": f"next=/unsubscribe/{TAMPERED}/",
            "headers": {"Referer": f"https://rally.example.org/my-data/{TAMPERED}/"},
        }
    }
    request = sentry_event_without_link_tokens(event, hint={})["request"]
    assert TAMPERED not in json.dumps(request)
    assert request["url"] == "https://rally.example.org/preferences/<token>/"
