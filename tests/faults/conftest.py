"""
Fixtures for fault tests: a real Celery worker on Redis and PostgreSQL, the ESP
simulator, a Redis server of the test's own to restart, and a seeded random
source so that a failing run can be replayed (RALLY_FAULT_SEED=<seed>).
"""

import os
import random
import signal
import socket
import subprocess
import time
from contextlib import contextmanager, suppress

import pytest
import redis
from django.conf import settings

from mailings import throttle
from mailsink import MailSink
from tests.integration.harness import Worker

# Loopback ports for the Redis servers these tests start and stop.
REDIS_PORTS = range(18600, 18650)


@pytest.fixture
def chaos():
    """A random source whose seed is printed (shown when a test fails) and can be replayed."""
    seed = int(os.environ.get("RALLY_FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"Fault seed: RALLY_FAULT_SEED={seed}")
    return random.Random(seed)


@pytest.fixture
def sink():
    """The ESP simulator in this process, answering in 30 ms."""
    with MailSink(port=0, latency_ms=30) as running:
        yield running


@pytest.fixture
def broker():
    """An empty Redis database for the broker, the cache and the send rate."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    throttle.clear()
    yield client
    client.flushdb()


@pytest.fixture
def workers(tmp_path):
    """Make killable workers (tests.integration.harness.Worker); all are killed at the end."""
    made = []

    def make(sink, *, batch=False, **kwargs):
        worker = Worker(tmp_path / f"worker{len(made)}", sink, batch=batch, **kwargs)
        worker.tmp_path.mkdir()
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.kill()


class RedisServer:
    """A redis-server subprocess without persistence: killed, it comes back empty."""

    def __init__(self, port, directory):
        self.port = port
        self.directory = directory
        self.process = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self):
        log = (self.directory / f"redis-{self.port}.log").open("a")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self):
        """SIGKILL the server: every queued task and key is gone."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _free_port(ports):
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"No free port in {ports.start}-{ports.stop - 1} for a Redis server")


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own on a free port (never the shared one on 6379)."""
    server = RedisServer(_free_port(REDIS_PORTS), tmp_path)
    server.start()
    yield server
    server.kill()


@contextmanager
def publishing_to(broker_url):
    """Send this process's Celery tasks to `broker_url` (as a web process using it would).

    Celery keeps one producer pool per broker URL (kombu's registry); the app's
    cached pools are dropped so the next task goes to `broker_url`, and the
    pools for it are closed and forgotten afterwards (their Redis may be gone).
    """
    from kombu import pools
    from kombu.utils.collections import eqhash

    from project.celery import app

    saved = app.conf.broker_write_url
    app.conf.broker_write_url = broker_url
    app._pool = app.amqp._producer_pool = None
    try:
        yield
    finally:
        key = eqhash(app.connection_for_write())
        for group in (pools.producers, pools.connections):
            pool = dict.pop(group, key, None)
            if pool is not None:
                with suppress(Exception):  # its server may be down
                    pool.force_close_all()
        app.conf.broker_write_url = saved
        app._pool = app.amqp._producer_pool = None
