"""
Rate limits for the public forms, counted in Django's cache.

With REDIS_URL set the cache is Redis, so the counts are shared by every web
process and `incr` is atomic; without it (development) the file cache counts
well enough. Keys hold a keyed hash of the address, never the address itself.
"""

import time

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

from crm.models import normalize_email

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """Return (count, seconds) for a rate such as "5/h" or "30/10m"."""
    try:
        count, period = rate.split("/")
        multiple, unit = period[:-1] or "1", period[-1]
        return int(count), int(multiple) * PERIODS[unit]
    except (ValueError, KeyError):
        raise ValueError(
            f"{rate!r} is not a rate: write count/period, such as 5/h (periods s, m, h, d)."
        ) from None


def hit(scope: str, key: str, rate: str) -> bool:
    """Count one request for `key` in `scope`; return True while it is within `rate`."""
    limit, window = parse_rate(rate)
    bucket = int(time.time() // window)
    digest = salted_hmac("rally.ratelimit", f"{scope}:{key}").hexdigest()[:32]
    cache_key = f"ratelimit:{scope}:{digest}:{bucket}"
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:
        # The key expired between add() and incr(): this is the first request again.
        cache.set(cache_key, 1, timeout=window + 1)
        count = 1
    return count <= limit


def client_ip(request) -> str:
    """Return the client's IP address, trusting RALLY_TRUSTED_PROXIES hops of X-Forwarded-For."""
    proxies = settings.RALLY_TRUSTED_PROXIES
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        # Each trusted proxy appends the address it saw; earlier entries can be forged.
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def allow_ip(request, scope: str) -> bool:
    """Count a request from the client's IP address; return False once over the limit."""
    return hit(f"{scope}:ip", client_ip(request), settings.RALLY_RATE_LIMIT_PER_IP)


def allow_address(email: str, scope: str) -> bool:
    """Count a request about `email`; return False once over the limit."""
    return hit(f"{scope}:address", normalize_email(email), settings.RALLY_RATE_LIMIT_PER_ADDRESS)
