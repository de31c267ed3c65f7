"""
A real worker sends a notice through the ESP simulator while the ESP fails:
it is tried again later, each wait longer than the last, and arrives once.
"""

import time
from itertools import pairwise

import pytest

from mailings import tasks
from tests.factories import SupporterFactory
from tests.integration.harness import Worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_data_link_waits_out_a_failing_esp_and_arrives_once(tmp_path, sink, broker):
    reader = SupporterFactory(email="reader@example.org")
    sink.fail_next(3, status=503)
    worker = Worker(tmp_path, sink, batch=False, queues="celery", RALLY_NOTICE_RETRY_SECONDS="0.5")
    worker.start()
    try:
        tasks.send_data_download.delay(reader.pk)
        wait_until(lambda: sink.messages(), 60, worker)
        time.sleep(1.5)  # time for a wrong extra copy to arrive
    finally:
        worker.kill()

    calls = sink.calls()
    assert [call.status for call in calls] == [503, 503, 503, 200]
    waits = [later.started_at - earlier.started_at for earlier, later in pairwise(calls)]
    # 0.5 s, then 1 s, then 2 s, each give or take a fifth: backing off, not hammering.
    assert all(wait >= floor for wait, floor in zip(waits, (0.4, 0.8, 1.6), strict=True))
    [record] = sink.messages()
    assert record.address == "reader@example.org"
    assert record.metadata == {"notice": "data_download"}
