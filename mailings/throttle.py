"""
The send rate shared by every worker: RALLY_SEND_RATE messages per second.

Held in Redis when REDIS_URL is set, so ten workers on three machines
together keep to the rate; otherwise in Django's cache, which is enough for
one machine. A worker reserves the messages it is about to send and sleeps
until its turn (a "virtual scheduling" limiter: one key holding the time at
which the next message may go). When the ESP answers 429, every worker holds
back until the time it asked for.

The same shared state notices an ESP outage: when calls for several different
deliveries fail (5xx, timeouts, refused credentials) and none succeeds in
between, every worker holds back, for longer the longer the outage lasts (up
to OUTAGE_MAX_PAUSE), and the failures stop counting against the deliveries'
attempts, so a long outage delays a mailing but never fails it. The first
accepted call ends the outage for every worker.
"""

import time

from django.conf import settings
from django.core.cache import cache

RATE_KEY = "rally:send:next"
PAUSE_KEY = "rally:send:pause-until"
# The outage: deliveries whose calls failed since the last accepted call, when
# the first of them failed, why the last did, and until when workers hold back.
FAILING_KEY = "rally:send:failing"
OUTAGE_SINCE_KEY = "rally:send:outage-since"
OUTAGE_REASON_KEY = "rally:send:outage-reason"
OUTAGE_PAUSE_KEY = "rally:send:outage-until"
OUTAGE_KEYS = (FAILING_KEY, OUTAGE_SINCE_KEY, OUTAGE_REASON_KEY, OUTAGE_PAUSE_KEY)
# Failed calls for this many different deliveries, with none accepted in
# between, mean the ESP is down (one message that keeps failing does not).
OUTAGE_DELIVERIES = 3
OUTAGE_MAX_PAUSE = 60.0  # seconds between tries, however long the outage
OUTAGE_STATE_TTL = 7 * 24 * 3600

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


def pause_all(seconds, *, key=PAUSE_KEY):
    """Hold every worker back for `seconds` (the ESP said 429, Retry-After; or see esp_failed)."""
    until = time.time() + seconds
    client = _client()
    if client is not None:
        current = float(client.get(key) or 0)
        if until > current:
            client.set(key, str(until), ex=max(1, int(seconds) + 1))
    else:
        cache.set(key, until, max(1, int(seconds) + 1))


def paused_for():
    """Return how many seconds every worker should still hold back."""
    client = _client()
    if client is not None:
        raw = client.mget(PAUSE_KEY, OUTAGE_PAUSE_KEY)
    else:
        raw = [cache.get(PAUSE_KEY), cache.get(OUTAGE_PAUSE_KEY)]
    return max(0.0, *(float(value or 0) - time.time() for value in raw))


def esp_failed(delivery_ids, reason):
    """Note that ESP calls for `delivery_ids` failed; return True if the ESP looks down.

    When it does, every worker holds back for a quarter of the outage so far
    (at least a second, at most OUTAGE_MAX_PAUSE): a few tries a minute, not
    thousands, and sending resumes within a minute of the ESP's recovery.
    """
    now = time.time()
    # A few are enough to tell; the set stays small however long the outage.
    members = [str(pk) for pk in delivery_ids[:OUTAGE_DELIVERIES]]
    client = _client()
    if client is not None:
        pipe = client.pipeline()
        pipe.sadd(FAILING_KEY, *members)
        pipe.expire(FAILING_KEY, OUTAGE_STATE_TTL)
        pipe.scard(FAILING_KEY)
        pipe.set(OUTAGE_SINCE_KEY, str(now), nx=True, ex=OUTAGE_STATE_TTL)
        pipe.get(OUTAGE_SINCE_KEY)
        pipe.set(OUTAGE_REASON_KEY, reason, ex=OUTAGE_STATE_TTL)
        _, _, failing, _, since, _ = pipe.execute()
        since = float(since)
    else:
        # One machine: a lost update only delays noticing the outage by a call.
        failing_ids = cache.get(FAILING_KEY, set()) | set(members)
        cache.set(FAILING_KEY, failing_ids, OUTAGE_STATE_TTL)
        cache.add(OUTAGE_SINCE_KEY, now, OUTAGE_STATE_TTL)
        cache.set(OUTAGE_REASON_KEY, reason, OUTAGE_STATE_TTL)
        failing, since = len(failing_ids), float(cache.get(OUTAGE_SINCE_KEY, now))
    if failing < OUTAGE_DELIVERIES:
        return False
    pause_all(min(OUTAGE_MAX_PAUSE, max(1.0, (now - since) / 4)), key=OUTAGE_PAUSE_KEY)
    return True


def esp_accepted():
    """Note that the ESP accepted a call: any outage is over, for every worker."""
    client = _client()
    if client is not None:
        client.delete(*OUTAGE_KEYS)
    elif cache.get(OUTAGE_SINCE_KEY) is not None:
        cache.delete_many(OUTAGE_KEYS)


def outage():
    """Return (since, reason) while the ESP looks down, else None: for staff to see."""
    client = _client()
    if client is not None:
        failing = client.scard(FAILING_KEY)
        since, reason = client.mget(OUTAGE_SINCE_KEY, OUTAGE_REASON_KEY)
        reason = reason.decode() if reason else ""
    else:
        failing = len(cache.get(FAILING_KEY, ()))
        since, reason = cache.get(OUTAGE_SINCE_KEY), cache.get(OUTAGE_REASON_KEY, "")
    if failing < OUTAGE_DELIVERIES or since is None:
        return None
    return float(since), reason


def wait_for_turn(count, *, limit):
    """Sleep until `count` messages may go; return False if that is beyond `limit` seconds."""
    wait = paused_for() + reserve(count)
    if wait > limit:
        return False
    if wait > 0:
        time.sleep(wait)
    return True


def clear():
    """Forget the shared rate, hold-backs and any outage (an operator's reset, a test's start)."""
    client = _client()
    if client is not None:
        client.delete(RATE_KEY, PAUSE_KEY, *OUTAGE_KEYS)
    cache.delete_many([RATE_KEY, PAUSE_KEY, *OUTAGE_KEYS])
