"""Webhooks never reach loopback, private or link-local addresses unless a setting allows it."""

import pytest

from crm.services import consent_grant
from project.api import outbound, webhooks
from project.api.models import WebhookDelivery

pytestmark = pytest.mark.django_db

REFUSED = [
    "https://127.0.0.1/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.9/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://localhost/hook",  # a name that resolves to loopback
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_addresses_are_refused(settings, url):
    """Every address a host resolves to is checked before connecting; a private one refuses it."""
    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(outbound.Refused, match="not a public address"):
        outbound.post(url, b"{}", {})


def test_plain_http_is_refused_without_the_setting(settings):
    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(outbound.Refused, match="https only"):
        outbound.post("http://example.org/hook", b"{}", {})


def test_a_name_with_one_private_address_among_public_ones_is_refused(settings, monkeypatch):
    """A DNS answer mixing a public and an internal address is refused, not half-trusted."""
    import socket

    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = False
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(outbound.Refused, match=r"10\.0\.0\.5"):
        outbound.post("https://partner.example/hook", b"{}", {})


def test_connection_goes_to_the_address_that_was_checked(receiver, monkeypatch):
    """The name is resolved once: a second, different answer (DNS rebinding) is never used."""
    import socket

    real = socket.getaddrinfo
    calls = []

    def rebinding(host, port, *args, **kwargs):
        if host != "partner.test":
            return real(host, port, *args, **kwargs)
        calls.append(host)
        # First the receiver, then an address where nothing listens.
        address = "127.0.0.1" if len(calls) == 1 else "127.0.0.2"
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = receiver.url.replace("127.0.0.1", "partner.test")
    answer = outbound.post(url, b"{}", {"Content-Type": "application/json"})

    assert answer.status == 200
    assert calls == ["partner.test"]
    ((headers, _),) = receiver.requests
    assert headers["Host"].startswith("partner.test")


def test_refused_delivery_records_why_and_is_not_sent(
    settings, supporter, endpoint, receiver, other_interest
):
    """With the setting off, a loopback endpoint gets nothing and the delivery says why."""
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")
    webhooks.webhooks_fan_out()
    delivery = WebhookDelivery.objects.get()
    settings.RALLY_WEBHOOK_ALLOW_PRIVATE = False

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "pending"

    delivery.refresh_from_db()
    assert "refused" in delivery.last_error
    assert receiver.requests == []
