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


def test_a_notice_the_esp_refuses_for_good_is_not_tried_again(postmark_esp, supporter):
    """(One the ESP cannot take now is tried again later: tests/integration/.)"""
    from mailings import tasks

    postmark_esp.set_faults(invalid=["alice@example.org"])

    result = tasks.send_data_download.apply(args=[supporter.pk])

    assert result.state == "SUCCESS"
    assert postmark_esp.call_count == 1
    assert postmark_esp.messages() == []


def test_notices_back_off_to_ten_minutes_and_keep_trying_for_about_a_day():
    from mailings import esp, tasks

    down = esp.Outcome(esp.TRANSIENT, "ESP unavailable (503).")
    waits = [tasks.retry_delay(n, down) for n in range(tasks.MAX_RETRIES)]

    assert waits[:4] == [10, 20, 40, 80]
    assert max(waits) == waits[-1] == 600
    assert 20 * 3600 < sum(waits) < 30 * 3600
    slow_down = esp.Outcome(esp.SLOW_DOWN, "The ESP asked us to slow down (429).", 45)
    assert tasks.retry_delay(3, slow_down) == 45
