"""Fixtures for tests with a real worker, Redis and the ESP simulator."""

import pytest
import redis
from django.conf import settings

from mailsink import MailSink


@pytest.fixture
def sink():
    """The ESP simulator with a real ESP's latency, in this process."""
    with MailSink(port=0, latency_ms=150) as running:
        yield running


@pytest.fixture
def broker():
    """An empty Redis database for the broker (and the send-rate keys)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
