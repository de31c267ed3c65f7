"""Repeated wrong passwords lock a staff login out (django-axes).

After RALLY_LOGIN_FAILURE_LIMIT wrong passwords for one username from one
address, that username is refused from that address, even with the right
password, and the login page says so. Other staff, and the same person from
elsewhere, can still log in; `manage.py axes_reset_username` unlocks at once.
"""

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def _log_in(client, username, password, **extra):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def _fail_five_times(client, username, **extra):
    for _ in range(5):
        response = _log_in(client, username, "wrong", **extra)
        assert response.status_code in (200, 429)


def test_five_wrong_passwords_then_the_right_one_is_refused(superuser):
    """The sixth try is refused with a clear message, though its password is right."""
    client = Client()
    _fail_five_times(client, "root")

    response = _log_in(client, "root", "pw")

    assert response.status_code == 429
    assert "Too many wrong passwords" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_four_wrong_passwords_leave_the_right_one_working(superuser):
    """Under the limit a typo costs nothing."""
    client = Client()
    for _ in range(4):
        _log_in(client, "root", "wrong")

    assert _log_in(client, "root", "pw").url == "/admin/"


def test_another_user_from_the_same_address_is_not_locked_out(superuser, membership_user):
    """A lockout is for one username at one address: colleagues at the same office still log in."""
    client = Client()
    _fail_five_times(client, "root")

    response = _log_in(Client(), "maya", "pw")

    assert response.status_code == 302
    assert response.url == "/admin/"


def test_the_same_user_elsewhere_is_not_locked_out(superuser):
    """Someone guessing from one address cannot lock the real person out everywhere."""
    _fail_five_times(Client(), "root", REMOTE_ADDR="203.0.113.9")

    assert _log_in(Client(), "root", "pw", REMOTE_ADDR="198.51.100.7").status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_counts(settings, superuser):
    """With RALLY_TRUSTED_PROXIES the client's address comes from X-Forwarded-For."""
    settings.RALLY_TRUSTED_PROXIES = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    _fail_five_times(Client(), "root", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)

    locked = _log_in(Client(), "root", "pw", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    other = _log_in(Client(), "root", "pw", HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)

    assert locked.status_code == 429
    assert other.status_code == 302


def test_axes_reset_username_unlocks_at_once(superuser):
    """The documented command lets the locked-out person straight back in."""
    client = Client()
    _fail_five_times(client, "root")

    call_command("axes_reset_username", "root")

    assert _log_in(client, "root", "pw").status_code == 302


def test_the_limit_is_a_setting(settings, superuser):
    """RALLY_LOGIN_FAILURE_LIMIT (AXES_FAILURE_LIMIT) sets how many tries are allowed."""
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    _log_in(client, "root", "wrong")
    _log_in(client, "root", "wrong")

    assert _log_in(client, "root", "pw").status_code == 429
