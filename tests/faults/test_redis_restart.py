"""
Redis (the broker, the cache and the shared send rate) is killed mid-send and
comes back empty, as a Redis without persistence does: every queued task is
lost. The worker stays up; the periodic sweeper rebuilds the work from the
database and the newsletter still reaches every reader exactly once.
"""

import time

import pytest

from mailings import services
from mailings.models import Mailing
from tests.factories import MailingFactory
from tests.faults.conftest import publishing_to
from tests.integration.harness import assert_exactly_once, subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS = 1_500
OUTAGE_SECONDS = 2  # how long Redis stays down before it restarts, empty


def test_send_resumes_by_itself_after_redis_restarts_empty(
    sink, own_redis, workers, chaos, django_user_model
):
    interest, readers = subscribers(RECIPIENTS)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = workers(
        sink,
        REDIS_URL=own_redis.url,
        CELERY_BROKER_URL=own_redis.url,
        RALLY_SEND_BATCH_SIZE="50",
        RALLY_SEND_CONCURRENCY="8",
    )
    worker.start()
    with publishing_to(own_redis.url):
        services.mailing_send_now(mailing=mailing, actor=staff)

    share = chaos.uniform(0.2, 0.5)
    wait_until(lambda: sink.count() >= RECIPIENTS * share, 90, worker)
    own_redis.kill()
    at_kill = sink.count()
    time.sleep(OUTAGE_SECONDS)  # the outage itself
    own_redis.start()
    wait_until(lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker)

    print(f"Redis killed after {at_kill} of {RECIPIENTS} messages")
    assert at_kill < RECIPIENTS
    assert worker.running is True  # nobody restarted the worker: it reconnected by itself
    assert worker.starts == 1
    assert_exactly_once(sink, mailing, readers)
