"""
The cache with REDIS_URL set: Django's Redis cache, with the one call the
rate limits (mailings.ratelimit) make on every public form post.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.utils.functional import cached_property


class RedisCache(DjangoRedisCache):
    @cached_property
    def _writer(self):
        # One client for the process (its pool is thread-safe); Django's
        # methods build a client for every call.
        return self._cache.get_client(write=True)

    def incr_in_window(self, key, timeout, version=None) -> int:
        """Count one at `key` (kept `timeout` seconds from its first count); return the count.

        One round trip to Redis (SET NX EX, then INCR, pipelined) where
        add() then incr() take three: Django's incr() asks EXISTS first.
        """
        key = self.make_and_validate_key(key, version=version)
        pipeline = self._writer.pipeline(transaction=False)
        pipeline.set(key, 0, ex=timeout, nx=True)
        pipeline.incr(key)
        return pipeline.execute()[1]
