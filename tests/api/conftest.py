import pytest

from project.api.keys import api_key_create
from project.api.models import Scope

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
