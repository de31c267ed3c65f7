"""The sign-up form gives the same answer whatever happened, and resists robots."""

import pytest
from django.core.cache import caches

from crm.models import Supporter
from crm.services import supporter_mark_undeliverable, suppression_add
from mailings import ratelimit
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


def sign_up(client, email, ip="198.51.100.1", **extra):
    data = {"email": email, "first_name": "Sam", "interests": ["r2p"], **extra}
    return client.post("/join/", data, REMOTE_ADDR=ip)


def page(response, email):
    return response.content.decode().replace(email, "ADDRESS")


def test_same_answer_for_new_known_suppressed_and_robot(client, supporter, interest, mailoutbox):
    bounced = factories.SupporterFactory(email="bounced@example.org")
    supporter_mark_undeliverable(supporter=bounced, status="bounced", method="bounce")
    suppression_add(email="complained@example.org", reason="complaint")

    answers = {
        "new": page(sign_up(client, "new@example.org"), "new@example.org"),
        "known": page(sign_up(client, "alice@example.org"), "alice@example.org"),
        "bounced": page(sign_up(client, "bounced@example.org"), "bounced@example.org"),
        "suppressed": page(sign_up(client, "complained@example.org"), "complained@example.org"),
        "robot": page(
            sign_up(client, "robot@example.org", website="http://spam.example"),
            "robot@example.org",
        ),
    }

    assert len(set(answers.values())) == 1
    assert sorted(m.to[0] for m in mailoutbox) == ["alice@example.org", "new@example.org"]


def test_suppressed_address_gets_no_email(client, interest, mailoutbox):
    suppression_add(email="gone@example.org", reason="erasure")
    sign_up(client, "GONE@example.org")
    assert mailoutbox == []
    assert Supporter.objects.count() == 0


def test_honeypot_filled_sends_nothing(client, interest, mailoutbox):
    response = sign_up(client, "bot@example.org", website="buy now")
    assert response.status_code == 200
    assert mailoutbox == []


def test_per_address_limit(client, interest, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "3/h"
    answers = {
        page(sign_up(client, "target@example.org", ip=f"192.0.2.{n}"), "target@example.org")
        for n in range(6)
    }
    assert len(answers) == 1
    assert len(mailoutbox) == 3


def test_per_address_limit_ignores_case_and_spaces(client, interest, mailoutbox, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "1/h"
    sign_up(client, "target@example.org")
    sign_up(client, " TARGET@Example.org ")
    assert len(mailoutbox) == 1


def test_per_ip_limit(client, interest, mailoutbox, settings):
    """Past the limit nothing is sent, and the page does not say so."""
    settings.RALLY_RATE_LIMIT_PER_IP = "4/h"
    answers = {page(sign_up(client, f"p{n}@example.org"), f"p{n}@example.org") for n in range(6)}
    assert len(answers) == 1
    assert len(mailoutbox) == 4
    sign_up(client, "other@example.org", ip="198.51.100.2")
    assert len(mailoutbox) == 5


def test_rate_limit_counts_hold_no_address(client, interest, settings):
    sign_up(client, "secret.person@example.org")
    keys = list(caches["default"]._cache.keys())
    assert keys
    assert not any("secret" in key for key in keys)


def test_client_ip_trusts_only_the_configured_proxies(rf, settings):
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.1")
    settings.RALLY_TRUSTED_PROXIES = 0
    assert ratelimit.client_ip(request) == "10.0.0.1"
    settings.RALLY_TRUSTED_PROXIES = 1
    assert ratelimit.client_ip(request) == "203.0.113.9"


@pytest.mark.parametrize("rate", ["5", "5/x", "a/h", "/h"])
def test_bad_rate_setting_says_how_to_write_it(rate):
    with pytest.raises(ValueError, match="write count/period"):
        ratelimit.parse_rate(rate)


@pytest.mark.redis
def test_limits_are_shared_through_redis(settings, interest):
    """With Redis every web process shares the counts (atomic INCR)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "project.cache.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": f"rally-test-{id(settings)}",
        }
    }
    caches["default"].clear()
    results = [ratelimit.hit("test", "same-key", "3/h") for _ in range(5)]
    assert results == [True, True, True, False, False]
    # Each count is forgotten after its window, not kept for ever.
    redis = caches["default"]._cache.get_client()
    (key,) = redis.keys(f"rally-test-{id(settings)}:*")
    assert 3500 < redis.ttl(key) <= 3601
    caches["default"].clear()
