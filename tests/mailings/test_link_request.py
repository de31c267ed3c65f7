""" "Email me my link": a fresh preference link to a known address, the same answer either way."""

import re

import pytest
from django.test import Client

from crm.services import supporter_erase, suppression_add
from mailings import tokens
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


def ask(client, email, ip="198.51.100.1"):
    return client.post("/preferences/", {"email": email}, REMOTE_ADDR=ip)


def answer(response, email):
    lines = response.content.decode().replace(email, "ADDRESS").splitlines()
    return [line for line in lines if "csrfmiddlewaretoken" not in line]


def test_page_asks_for_an_address(client):
    html = client.get("/preferences/").content.decode()
    assert '<label for="id_email">Email address</label>' in html
    assert "Email me my link" in html


def test_known_address_gets_a_working_link(client, supporter, mailoutbox):
    response = ask(client, "Alice@Example.org")

    assert response.status_code == 200
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["alice@example.org"]
    path = re.search(r"https://rally\.example\.org(/preferences/[^/\s]+/)", message.body).group(1)
    assert path == f"/preferences/{tokens.make_preferences_token(supporter)}/"
    assert client.get(path).status_code == 200


def test_unsubscribed_supporter_can_still_get_their_link(client, opted_out_supporter, mailoutbox):
    ask(client, "bob@example.org")
    assert len(mailoutbox) == 1


def test_same_answer_for_known_unknown_suppressed_and_erased(client, supporter, mailoutbox):
    erased = factories.SupporterFactory(email="erased@example.org")
    supporter_erase(supporter=erased)
    suppression_add(email="complained@example.org", reason="complaint")
    factories.SupporterFactory(email="complained@example.org")

    answers = [
        answer(ask(client, email), email)
        for email in (
            "alice@example.org",
            "nobody@example.org",
            "complained@example.org",
            "erased@example.org",
        )
    ]

    assert all(a == answers[0] for a in answers)
    assert [m.to for m in mailoutbox] == [["alice@example.org"]]


def test_invalid_address_is_explained(client, mailoutbox):
    response = ask(client, "alice at example")
    assert "Enter an email address like name@example.org." in response.content.decode()
    assert mailoutbox == []


def test_limits_per_address_and_per_ip(client, supporter, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "2/h"
    settings.RALLY_RATE_LIMIT_PER_IP = "5/h"
    for n in range(4):
        assert ask(client, "alice@example.org", ip=f"192.0.2.{n}").status_code == 200
    assert len(mailoutbox) == 2
    for n in range(6):
        factories.SupporterFactory(email=f"x{n}@example.org")
    answers = [
        answer(ask(client, f"x{n}@example.org", ip="203.0.113.50"), f"x{n}@example.org")
        for n in range(6)
    ]
    # Past the per-IP limit the page is the same, and nothing more is sent.
    assert all(a == answers[0] for a in answers)
    assert len(mailoutbox) == 2 + 5


def test_form_needs_the_csrf_token(supporter, mailoutbox):
    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post("/preferences/", {"email": "alice@example.org"})
    assert response.status_code == 403
    assert mailoutbox == []


def test_the_queue_never_holds_the_address(client, supporter, monkeypatch):
    from mailings import tasks

    queued = []
    monkeypatch.setattr(tasks.send_preferences_link, "delay", lambda *a: queued.append(a))
    ask(client, "alice@example.org")
    assert len(queued) == 1
    assert "alice" not in repr(queued)
