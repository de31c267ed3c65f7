"""
Rate limits for the public forms, counted in Django's cache.

With REDIS_URL set the cache is Redis, so the counts are shared by every web
process and `incr` is atomic; without it (development) the file cache counts
well enough. Keys hold a keyed hash of the address, never the address itself.

Three limits stop the forms being used to flood someone's inbox: one per
client network (an IPv4 address, or an IPv6 /64), one per mailbox (the
address without its +tag), and one for the whole installation
(RALLY_NOTICES_PER_HOUR), which holds when many networks aim at many
addresses.
"""

import ipaddress
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

from crm.models import normalize_email

logger = logging.getLogger(__name__)

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


def count(scope: str, key: str, window: int) -> int:
    """Count one request for `key` in `scope`; return the count in this `window` (seconds)."""
    bucket = int(time.time() // window)
    digest = salted_hmac("rally.ratelimit", f"{scope}:{key}").hexdigest()[:32]
    cache_key = f"ratelimit:{scope}:{digest}:{bucket}"
    if hasattr(cache, "incr_in_window"):
        # project.cache.RedisCache: one round trip.
        return cache.incr_in_window(cache_key, window + 1)
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        return cache.incr(cache_key)
    except ValueError:
        # The key expired between add() and incr(): this is the first request again.
        cache.set(cache_key, 1, timeout=window + 1)
        return 1


def hit(scope: str, key: str, rate: str) -> bool:
    """Count one request for `key` in `scope`; return True while it is within `rate`."""
    limit, window = parse_rate(rate)
    return count(scope, key, window) <= limit


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


def client_network(address: str) -> str:
    """Return the network the per-IP limit counts `address` in.

    An IPv4 address counts alone. An IPv6 address counts as its /64: a home,
    a phone or a rented server is given a whole /64, so counting single
    addresses would let one client pass the limit with a fresh address per
    request. IPv4-mapped IPv6 (::ffff:192.0.2.1, as a dual-stack socket
    reports an IPv4 client) is the IPv4 address. Anything unreadable counts
    as itself.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def mailbox(email: str) -> str:
    """Return the mailbox the per-address limit counts `email` as: lower-cased, without +tag.

    Most providers deliver name+anything@ to name@, so each tag would
    otherwise be a fresh address to flood the same inbox with. Only the count
    uses this form; the supporter's address is kept as typed.
    """
    local, at, domain = normalize_email(email).rpartition("@")
    return f"{local.split('+', 1)[0]}{at}{domain}"


def allow_ip(request, scope: str) -> bool:
    """Count a request from the client's network; return False once over the limit."""
    network = client_network(client_ip(request))
    return hit(f"{scope}:ip", network, settings.RALLY_RATE_LIMIT_PER_IP)


def allow_address(email: str, scope: str) -> bool:
    """Count a request about `email`'s mailbox; return False once over the limit."""
    return hit(f"{scope}:address", mailbox(email), settings.RALLY_RATE_LIMIT_PER_ADDRESS)


def allow_notice(scope: str) -> bool:
    """Count one notice email about to be queued; return False once the hour's cap is reached.

    The cap (RALLY_NOTICES_PER_HOUR) is for the whole installation and counts
    by the clock hour. Reaching it is logged once an hour, without an address.
    """
    limit = settings.RALLY_NOTICES_PER_HOUR
    queued = count("notices", "installation", 3600)
    if queued == limit + 1:
        logger.warning(
            "Notice emails capped: %s queued this hour (RALLY_NOTICES_PER_HOUR); "
            "this %s notice and any more until the hour ends are not sent",
            limit,
            scope,
        )
    return queued <= limit
