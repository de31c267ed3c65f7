"""
The send rate shared by every worker: RALLY_SEND_RATE messages per second.

Held in Redis when REDIS_URL is set, so ten workers on three machines
together keep to the rate; otherwise in Django's cache, which is enough for
one machine. A worker reserves the messages it is about to send and sleeps
until its turn (a "virtual scheduling" limiter: one key holding the time at
which the next message may go). When the ESP answers 429, every worker holds
back until the time it asked for.
"""

import time

from django.conf import settings
from django.core.cache import cache

RATE_KEY = "rally:send:next"
PAUSE_KEY = "rally:send:pause-until"

# KEYS[1] next free time; ARGV: cost in seconds, burst in seconds. The caller
# waits until the last of its messages is due, less one burst's allowance.
# Redis's own clock, so workers on machines with skewed clocks agree.
_RESERVE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local wait = next_free + tonumber(ARGV[1]) - now - tonumber(ARGV[2])
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], tostring(next_free + tonumber(ARGV[1])), 'EX', 3600)
return tostring(wait)
"""

_redis = {}


def _client():
    url = settings.REDIS_URL
    if not url:
        return None
    client = _redis.get(url)
    if client is None:
        import redis

        client = _redis[url] = redis.Redis.from_url(url)
        client.reserve_script = client.register_script(_RESERVE)
    return client


def reserve(count):
    """Reserve `count` messages against the shared rate; return seconds to wait first."""
    rate = settings.RALLY_SEND_RATE
    if rate <= 0 or count <= 0:
        return 0.0
    cost = count / rate
    burst = 1.0  # allow a second's worth to go at once, so batches are not chopped up
    client = _client()
    if client is not None:
        return float(client.reserve_script(keys=[RATE_KEY], args=[cost, burst]))
    # Django's cache has no atomic read-modify-write for floats; lock with add().
    now = time.time()
    for _ in range(200):
        if cache.add(RATE_KEY + ":lock", 1, 5):
            try:
                next_free = max(float(cache.get(RATE_KEY) or 0), now)
                cache.set(RATE_KEY, next_free + cost, 3600)
                return max(0.0, next_free + cost - now - burst)
            finally:
                cache.delete(RATE_KEY + ":lock")
        time.sleep(0.01)
    return cost


def pause_all(seconds):
    """Hold every worker back for `seconds` (the ESP said 429, Retry-After)."""
    until = time.time() + seconds
    client = _client()
    if client is not None:
        current = float(client.get(PAUSE_KEY) or 0)
        if until > current:
            client.set(PAUSE_KEY, str(until), ex=max(1, int(seconds) + 1))
    else:
        cache.set(PAUSE_KEY, until, max(1, int(seconds) + 1))


def paused_for():
    """Return how many seconds every worker should still hold back."""
    client = _client()
    raw = client.get(PAUSE_KEY) if client is not None else cache.get(PAUSE_KEY)
    return max(0.0, float(raw or 0) - time.time())


def wait_for_turn(count, *, limit):
    """Sleep until `count` messages may go; return False if that is beyond `limit` seconds."""
    wait = paused_for() + reserve(count)
    if wait > limit:
        return False
    if wait > 0:
        time.sleep(wait)
    return True


def clear():
    """Forget the shared rate and any hold-back (an operator's reset; tests start clean)."""
    client = _client()
    if client is not None:
        client.delete(RATE_KEY, PAUSE_KEY)
    cache.delete_many([RATE_KEY, PAUSE_KEY])
