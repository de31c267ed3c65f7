"""Notices reach the ESP through Anymail's real Postmark backend (the loopback simulator)."""

import re

import pytest
from django.test import Client

from crm.services import supporter_get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


def test_sign_up_confirmed_from_the_email_the_esp_received(postmark_esp, interest):
    client = Client()
    client.post("/join/", {"email": "Reader@example.org", "interests": ["r2p"]})

    [record] = postmark_esp.messages()
    assert record.address == "reader@example.org"
    assert record.tags == ["notice"]
    assert record.metadata == {"notice": "signup_confirm"}
    path = re.search(r"https://rally\.example\.org(/join/confirm/\S+/)", record.text).group(1)
    assert path in record.html

    client.post(path)

    assert supporter_get("reader@example.org").subscriptions.get().interest == interest


def test_email_me_my_link_through_the_esp(postmark_esp, supporter):
    Client().post("/preferences/", {"email": "alice@example.org"})
    Client().post("/preferences/", {"email": "stranger@example.org"})

    [record] = postmark_esp.messages()
    assert record.address == "alice@example.org"
    path = re.search(r"https://rally\.example\.org(/preferences/\S+/)", record.text).group(1)
    assert Client().get(path).status_code == 200
