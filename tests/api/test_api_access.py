"""Who may call what: a key (401 without), its scopes (403 without), its rate limit (429)."""

import pytest

from project.api.keys import api_key_revoke
from project.api.models import ApiKey, Scope

pytestmark = pytest.mark.django_db

# (method, path, body, scope needed; None: any valid key)
CALLS = [
    ("get", "/api/interests", None, None),
    ("post", "/api/supporters", {"email": "new@example.org"}, Scope.WRITE_SUPPORTERS),
    (
        "post",
        "/api/supporters/batch",
        {"supporters": [{"email": "new@example.org"}]},
        Scope.WRITE_SUPPORTERS,
    ),
    ("post", "/api/supporters/lookup", {"email": "alice@example.org"}, Scope.READ_SUPPORTERS),
    ("get", "/api/supporters/{alice}", None, Scope.READ_SUPPORTERS),
    (
        "post",
        "/api/supporters/unsubscribe",
        {"email": "alice@example.org", "source": "crm"},
        Scope.WRITE_SUPPORTERS,
    ),
    ("get", "/api/mailings", None, Scope.READ_MAILINGS),
    ("get", "/api/actions", None, None),
    ("post", "/api/actions/none-such/sign", {"email": "a@example.org"}, Scope.SIGN_ACTIONS),
]


def _call(client, method, path, body, supporter, **headers):
    path = path.format(alice=supporter.pk)
    if method == "get":
        return client.get(path, **headers)
    return client.post(path, body, content_type="application/json", **headers)


@pytest.mark.parametrize(("method", "path", "body", "scope"), CALLS)
def test_every_call_needs_a_key(client, supporter, method, path, body, scope):
    """Without a key, or with a made-up or revoked one, the answer is 401 and JSON."""
    response = _call(client, method, path, body, supporter)
    assert response.status_code == 401
    assert "API key" in response.json()["message"]
    assert response["WWW-Authenticate"] == "Bearer"
    bogus = {"HTTP_AUTHORIZATION": "Bearer rally_000000000000_guess"}
    assert _call(client, method, path, body, supporter, **bogus).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "scope"), CALLS)
def test_each_call_needs_its_scope(client, make_key, supporter, method, path, body, scope):
    """A key without the call's scope gets 403 naming it; with the scope, the call works."""
    others = [value for value in Scope.values if value != scope]
    _, without = make_key(scopes=others)
    _, with_it = make_key(scopes=[scope] if scope else [])

    refused = _call(client, method, path, body, supporter, **without)
    allowed = _call(client, method, path, body, supporter, **with_it)

    if scope is None:
        assert refused.status_code == 200
    else:
        assert refused.status_code == 403
        assert scope in refused.json()["message"]
    # A signature for an action that does not exist: allowed in, then not found.
    assert allowed.status_code == (404 if "sign" in path else 200), allowed.content


def test_revoked_key_stops_working(client, make_key):
    key, headers = make_key()
    assert client.get("/api/interests", **headers).status_code == 200
    api_key_revoke(key=key)
    assert client.get("/api/interests", **headers).status_code == 401


def test_key_is_kept_as_a_hash_only(make_key):
    """The database holds the prefix and a SHA-256, never the key's text."""
    key, headers = make_key()
    text = headers["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    secret = text.removeprefix(f"rally_{key.prefix}_")  # url-safe: it may hold "_" itself
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert secret not in str(row)
    assert text.startswith(f"rally_{key.prefix}_")


def test_calls_over_the_rate_limit_get_429(settings, client, make_key):
    """Each key has its own count; past it, 429 with Retry-After, and other keys still work."""
    settings.RALLY_API_RATE_LIMIT = "3/m"
    key, busy = make_key()
    _, calm = make_key()
    answers = [client.get("/api/interests", **busy).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = client.get("/api/interests", **busy)
    assert 0 < int(limited["Retry-After"]) <= 60
    assert "3/m" in limited.json()["message"]
    assert client.get("/api/interests", **calm).status_code == 200
    key.refresh_from_db()
    assert key.call_count == 3
