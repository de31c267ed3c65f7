"""The public forms cannot be used to flood someone's inbox.

A mailbox counts once however its address is tagged (name+1@, name+2@…), an
IPv6 client counts by its /64, and the whole installation queues at most
RALLY_NOTICES_PER_HOUR notices an hour. Past any limit the page is the one
everyone sees; within the limits every email goes out.
"""

import datetime as dt
import logging
import re

import pytest
import time_machine

from crm.services import supporter_get
from mailings import ratelimit
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


@pytest.fixture(autouse=True)
def _mid_hour():
    """Counts are kept per clock hour: run well inside one, so none resets mid-test."""
    with time_machine.travel(dt.datetime(2026, 3, 4, 10, 20, tzinfo=dt.UTC), tick=True):
        yield


def sign_up(client, email, ip="198.51.100.1"):
    data = {"email": email, "first_name": "Sam", "interests": ["r2p"]}
    return client.post("/join/", data, REMOTE_ADDR=ip)


def ask_for_link(client, email, ip="198.51.100.1"):
    return client.post("/preferences/", {"email": email}, REMOTE_ADDR=ip)


def page(response, email):
    """The page as anyone would see it: status and text, the address typed left out."""
    lines = response.content.decode().replace(email, "ADDRESS").splitlines()
    return response.status_code, tuple(line for line in lines if "csrfmiddlewaretoken" not in line)


def test_tagged_variants_of_one_address_share_its_limit(client, interest, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "3/h"
    emails = [f"victim+{n}@example.org" for n in range(1, 11)]

    answers = {
        page(sign_up(client, email, ip=f"192.0.2.{n}"), email) for n, email in enumerate(emails)
    }

    assert len(answers) == 1
    assert [message.to for message in mailoutbox] == [[email] for email in emails[:3]]


def test_the_tag_and_case_are_ignored_only_by_the_count(client, interest, mailoutbox, settings):
    """victim@, Victim+News@ and VICTIM+x@ are one mailbox; each email goes where it was typed."""
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "2/h"
    for email in ("Victim+News@Example.org", "victim@example.org", "VICTIM+x@EXAMPLE.ORG"):
        sign_up(client, email)

    assert [message.to for message in mailoutbox] == [
        ["Victim+News@Example.org"],
        ["victim@example.org"],
    ]
    confirm = re.search(r"https://rally\.example\.org(/join/confirm/[^/\s]+/)", mailoutbox[0].body)
    client.post(confirm.group(1))
    assert supporter_get("victim+news@example.org").email == "Victim+News@Example.org"
    assert supporter_get("victim@example.org") is None


def test_tagged_variants_share_the_limit_on_email_me_my_link(client, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "2/h"
    emails = [f"alice+{n}@example.org" for n in range(5)]
    for email in emails:
        factories.SupporterFactory(email=email)

    answers = {page(ask_for_link(client, email), email) for email in emails}

    assert len(answers) == 1
    assert [message.to for message in mailoutbox] == [[email] for email in emails[:2]]


def test_forty_addresses_in_one_ipv6_64_share_the_per_ip_limit(client, interest, mailoutbox):
    """The default limit is 30 an hour per network; the 40 addresses are one /64."""
    answers = {
        page(sign_up(client, f"p{n}@example.org", ip=f"2001:db8:5:7::{n:x}"), f"p{n}@example.org")
        for n in range(1, 41)
    }
    answers.add(
        page(
            sign_up(client, "q@example.org", ip="2001:db8:5:7:ffff:ffff:ffff:ffff"), "q@example.org"
        )
    )

    assert len(answers) == 1
    assert len(mailoutbox) == 30


def test_forty_addresses_in_one_ipv6_64_share_the_limit_on_email_me_my_link(
    client, mailoutbox, settings
):
    settings.RALLY_RATE_LIMIT_PER_IP = "3/h"
    emails = [f"member{n}@example.org" for n in range(40)]
    for email in emails:
        factories.SupporterFactory(email=email)

    answers = {
        page(ask_for_link(client, email, ip=f"2001:db8:5:7::{n + 1:x}"), email)
        for n, email in enumerate(emails)
    }

    assert len(answers) == 1
    assert len(mailoutbox) == 3


def test_two_ipv6_64s_are_counted_apart(client, interest, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_IP = "2/h"
    for n in range(3):
        sign_up(client, f"a{n}@example.org", ip=f"2001:db8:5:7::{n + 1}")
        sign_up(client, f"b{n}@example.org", ip=f"2001:db8:5:8::{n + 1}")

    assert sorted(message.to[0] for message in mailoutbox) == [
        "a0@example.org",
        "a1@example.org",
        "b0@example.org",
        "b1@example.org",
    ]


def test_ipv4_addresses_are_counted_one_by_one(client, interest, mailoutbox, settings):
    """Neighbouring IPv4 addresses are apart; an IPv4-mapped IPv6 address is its IPv4 address."""
    settings.RALLY_RATE_LIMIT_PER_IP = "1/h"
    sign_up(client, "one@example.org", ip="192.0.2.1")
    sign_up(client, "two@example.org", ip="192.0.2.2")
    sign_up(client, "three@example.org", ip="::ffff:192.0.2.1")

    assert [message.to for message in mailoutbox] == [["one@example.org"], ["two@example.org"]]


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db8:5:7::1", "2001:db8:5:7::/64"),
        ("2001:DB8:5:7:ffff:ffff:ffff:ffff", "2001:db8:5:7::/64"),
        ("", ""),
        ("not an address", "not an address"),
    ],
)
def test_client_network(address, network):
    assert ratelimit.client_network(address) == network


def test_the_installation_wide_cap_stops_sends_and_says_so_once(
    client, interest, supporter, mailoutbox, settings, caplog
):
    """Past the hourly cap nothing more is queued, from either form; one warning, no address."""
    settings.RALLY_NOTICES_PER_HOUR = 3
    caplog.set_level(logging.INFO, logger="mailings.ratelimit")
    answers = {
        page(sign_up(client, f"person{n}@example.org", ip=f"192.0.2.{n}"), f"person{n}@example.org")
        for n in range(6)
    }
    link_answers = {
        page(ask_for_link(client, email, ip="198.51.100.9"), email)
        for email in ("alice@example.org", "nobody@example.org")
    }

    assert len(answers) == 1
    assert len(link_answers) == 1
    assert [message.to for message in mailoutbox] == [[f"person{n}@example.org"] for n in range(3)]
    warnings = [record for record in caplog.records if record.name == "mailings.ratelimit"]
    assert [record.levelname for record in warnings] == ["WARNING"]
    assert "Notice emails capped: 3 queued this hour" in warnings[0].getMessage()
    assert "@" not in caplog.text


def test_the_cap_counts_again_next_hour(client, interest, mailoutbox, settings):
    settings.RALLY_NOTICES_PER_HOUR = 1
    sign_up(client, "first@example.org")
    sign_up(client, "second@example.org", ip="192.0.2.77")
    with time_machine.travel(dt.datetime(2026, 3, 4, 11, 5, tzinfo=dt.UTC)):
        sign_up(client, "third@example.org", ip="192.0.2.78")

    assert [message.to for message in mailoutbox] == [["first@example.org"], ["third@example.org"]]


def test_within_the_limits_everyone_gets_their_email(client, interest, mailoutbox):
    """Five people in one household (one /64), one of them twice, all with default limits."""
    people = [f"member{n}@example.org" for n in range(5)] + ["member0+news@example.org"]
    for n, email in enumerate(people):
        response = sign_up(client, email, ip=f"2001:db8:5:7::{n + 1}")
        assert response.status_code == 200
        assert "Check your email" in response.content.decode()

    assert [message.to for message in mailoutbox] == [[email] for email in people]
    for message in mailoutbox:
        confirm = re.search(r"https://rally\.example\.org(/join/confirm/[^/\s]+/)", message.body)
        assert "signed up" in client.post(confirm.group(1)).content.decode()
    assert all(supporter_get(email) is not None for email in people)
