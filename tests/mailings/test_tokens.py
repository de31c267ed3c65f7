"""Signed links: unguessable, tamper-evident, long-lived, revocable, one salt per purpose."""

import base64
import datetime as dt
import json
import zlib

import hypothesis
import hypothesis.strategies as st
import pytest
import time_machine
from cryptography.fernet import Fernet
from django.core import signing
from django.test import override_settings
from django.utils.crypto import salted_hmac

from crm import services
from mailings import tokens
from tests import factories

pytestmark = pytest.mark.django_db


def test_preferences_token_round_trip_names_the_supporter(supporter):
    token = tokens.make_preferences_token(supporter)
    assert tokens.read_preferences_token(token) == supporter


def test_token_does_not_contain_the_email_address(supporter):
    token = tokens.make_preferences_token(supporter)
    assert "alice" not in token.lower()
    assert tokens.preferences_url(supporter).startswith("https://rally.example.org/preferences/")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.replace(":", ";", 1),
        lambda t: "x" + t,
        lambda t: t[: len(t) // 2],
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_tampered_preferences_token_is_refused(supporter, mangle):
    assert tokens.read_preferences_token(mangle(tokens.make_preferences_token(supporter))) is None


def test_token_for_another_supporter_id_cannot_be_forged(supporter):
    """Changing the payload breaks the signature: ids cannot be walked."""
    other = factories.SupporterFactory()
    token = tokens.make_preferences_token(supporter)
    _payload, rest = token.split(":", 1)
    payload = signing.b64_encode(f'{{"s":{other.pk},"v":1}}'.encode()).decode()
    assert tokens.read_preferences_token(f"{payload}:{rest}") is None


def test_token_of_one_purpose_is_refused_for_another(supporter):
    assert tokens.read_unsubscribe_token(tokens.make_preferences_token(supporter)) == (None, None)
    assert tokens.read_preferences_token(tokens.make_unsubscribe_token(supporter)) is None
    assert tokens.read_data_download_token(tokens.make_preferences_token(supporter)) is None


def test_unsubscribe_token_names_supporter_and_mailing(supporter, r2p_mailing):
    token = tokens.make_unsubscribe_token(supporter, r2p_mailing)
    assert tokens.read_unsubscribe_token(token) == (supporter, r2p_mailing.pk)
    assert tokens.read_unsubscribe_token(tokens.make_unsubscribe_token(supporter)) == (
        supporter,
        None,
    )


def test_links_keep_working_for_years(supporter, r2p_mailing):
    preferences = tokens.make_preferences_token(supporter)
    unsubscribe = tokens.make_unsubscribe_token(supporter, r2p_mailing)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)):
        assert tokens.read_preferences_token(preferences) == supporter
        assert tokens.read_unsubscribe_token(unsubscribe) == (supporter, r2p_mailing.pk)


def test_staff_revoking_links_invalidates_every_earlier_link(supporter, r2p_mailing):
    old_preferences = tokens.make_preferences_token(supporter)
    old_unsubscribe = tokens.make_unsubscribe_token(supporter, r2p_mailing)
    old_data = tokens.make_data_download_token(supporter)

    supporter = services.supporter_revoke_links(supporter=supporter)

    assert tokens.read_preferences_token(old_preferences) is None
    assert tokens.read_unsubscribe_token(old_unsubscribe) == (None, None)
    assert tokens.read_data_download_token(old_data) is None
    assert tokens.read_preferences_token(tokens.make_preferences_token(supporter)) == supporter


def test_erased_supporter_links_are_dead(supporter):
    token = tokens.make_preferences_token(supporter)
    services.supporter_erase(supporter=supporter)
    assert tokens.read_preferences_token(token) is None


def test_deleted_supporter_token_is_refused(supporter):
    token = tokens.make_preferences_token(supporter)
    supporter.delete()
    assert tokens.read_preferences_token(token) is None


def test_data_download_token_expires(supporter, settings):
    settings.RALLY_DATA_LINK_MAX_AGE = 3600
    token = tokens.make_data_download_token(supporter)
    assert tokens.read_data_download_token(token) == supporter
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)):
        assert tokens.read_data_download_token(token) is None


def test_clock_can_be_replaced(supporter, monkeypatch, settings):
    settings.RALLY_DATA_LINK_MAX_AGE = 60
    token = tokens.make_data_download_token(supporter)
    real_now = tokens.now()
    monkeypatch.setattr(tokens, "now", lambda: real_now + 61)
    assert tokens.read_data_download_token(token) is None


def test_signup_token_is_encrypted_and_round_trips():
    signup = tokens.PendingSignup(
        email="new.person@example.org",
        first_name="Nia",
        last_name="Okafor",
        postcode="E8 1DY",
        interest_ids=(1, 2),
        wording="Words shown.",
        wording_version="v1",
        ip_address="203.0.113.7",
    )
    token = tokens.make_signup_token(signup)
    assert "new.person" not in token
    assert "example" not in token
    assert tokens.read_signup_token(token) == signup


def test_signup_token_keeps_its_one_letter_keys(settings):
    """Workers still running the previous release read tokens the new one makes."""
    signup = tokens.PendingSignup(
        email="new.person@example.org",
        first_name="Nia",
        last_name="Okafor",
        postcode="E8 1DY",
        interest_ids=(1, 2),
        wording="Words shown.",
        wording_version="v1",
        ip_address=None,
    )
    token = tokens.make_signup_token(signup)

    key = salted_hmac("rally.signup", "fernet", secret=settings.SECRET_KEY, algorithm="sha256")
    data = Fernet(base64.urlsafe_b64encode(key.digest())).decrypt(token.encode())
    assert json.loads(zlib.decompress(data)) == {
        "e": "new.person@example.org",
        "f": "Nia",
        "l": "Okafor",
        "p": "E8 1DY",
        "i": [1, 2],
        "w": "Words shown.",
        "wv": "v1",
        "ip": None,
    }


def test_signup_token_expires(settings):
    settings.RALLY_SIGNUP_CONFIRM_MAX_AGE = 7 * 24 * 3600
    signup = tokens.PendingSignup(email="late@example.org")
    token = tokens.make_signup_token(signup)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=6)):
        assert tokens.read_signup_token(token) == signup
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=8)):
        assert tokens.read_signup_token(token) is None


@pytest.mark.parametrize("junk", ["", "gAAAAA", "x" * 500, "gAAAAABn" + "A" * 120, "é"])
def test_bad_signup_token_is_refused_not_raised(junk):
    assert tokens.read_signup_token(junk) is None


def test_tokens_survive_secret_key_rotation(supporter, settings):
    preferences = tokens.make_preferences_token(supporter)
    pending = tokens.PendingSignup(email="a@example.org")
    signup = tokens.make_signup_token(pending)
    old_key = settings.SECRET_KEY
    with override_settings(SECRET_KEY="a-brand-new-secret-key", SECRET_KEY_FALLBACKS=[old_key]):
        assert tokens.read_preferences_token(preferences) == supporter
        assert tokens.read_signup_token(signup) == pending
    with override_settings(SECRET_KEY="a-brand-new-secret-key", SECRET_KEY_FALLBACKS=[]):
        assert tokens.read_preferences_token(preferences) is None
        assert tokens.read_signup_token(signup) is None


def test_link_request_token_seals_the_address():
    token = tokens.make_link_request_token("whoever@example.org")
    assert "whoever" not in token
    assert tokens.read_link_request_token(token) == "whoever@example.org"
    assert tokens.read_link_request_token(token[:-2]) is None


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(junk=st.text(max_size=600) | st.binary(max_size=400).map(bytes.hex))
def test_no_junk_token_raises_or_is_accepted(junk):
    assert tokens.read_preferences_token(junk) is None
    assert tokens.read_unsubscribe_token(junk) == (None, None)
    assert tokens.read_data_download_token(junk) is None
    assert tokens.read_signup_token(junk) is None
    assert tokens.read_link_request_token(junk) is None


@pytest.mark.postgres
def test_postgresql_plans_the_link_read_once_per_connection(supporter):
    """After a few clicks, each connection runs the link read as a prepared statement."""
    from django.db import connection

    token = tokens.make_preferences_token(supporter)
    for _ in range(6):
        assert tokens.read_preferences_token(token) == supporter
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any("FROM crm_supporter s WHERE s.id = $1" in statement for statement in prepared)
