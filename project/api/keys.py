"""
API keys: made, shown once, checked, and counted against their rate limit.

A key reads `rally_<prefix>_<secret>`. The prefix (12 hex digits) finds the
row; the secret (32 random bytes) is compared by its SHA-256 in constant time.
A slow password hash would add nothing: nobody can guess 256 random bits, and
every API call checks a key.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils import timezone

from mailings import ratelimit
from project.api.models import ApiKey

KEY_START = "rally_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, scopes, partner=None, created_by=None) -> tuple[ApiKey, str]:
    """Create a key; return it and its full text, which is never shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        scopes=sorted(set(scopes)),
        partner=partner,
        created_by=created_by,
    )
    return key, f"{KEY_START}{prefix}_{secret}"


def api_key_revoke(*, key: ApiKey) -> None:
    """Stop `key` working, for good (its row stays, so the audit trail can name it)."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def key_for(text: str) -> ApiKey | None:
    """Return the usable key whose full text is `text`, or None."""
    if not text.startswith(KEY_START):
        return None
    prefix, _, secret = text[len(KEY_START) :].partition("_")
    if not prefix or not secret:
        return None
    key = ApiKey.objects.usable().select_related("partner").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)):
        return None
    return key


def within_rate(key: ApiKey, *, weight: int = 1) -> bool:
    """Count a call by `key`; return False once it is over RALLY_API_RATE_LIMIT.

    The count is kept in the cache (Redis in production), per key and window.
    """
    limit, window = ratelimit.parse_rate(settings.RALLY_API_RATE_LIMIT)
    return ratelimit.count("api", key.prefix, window) <= limit


def retry_after() -> int:
    """Return the seconds until the current rate-limit window ends."""
    _, window = ratelimit.parse_rate(settings.RALLY_API_RATE_LIMIT)
    return window - int(timezone.now().timestamp()) % window or window
