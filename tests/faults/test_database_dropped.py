"""
PostgreSQL drops the sending worker's connections mid-batch (pg_terminate_backend,
as a failover, a proxy restart or an administrator would): the worker reconnects,
records what the ESP already accepted, and retries the rest; nothing is sent twice.

The ESP's message search is made to fail throughout, as with an ESP that cannot
be asked (SendGrid, Amazon SES): a delivery whose outcome the worker forgot would
end "fate unknown", so every delivery ending "sent" shows the worker never lost
track of a call.
"""

import time

import pytest
from django.db import connection

from mailings import services
from mailings.models import Mailing
from tests.factories import MailingFactory
from tests.integration.harness import assert_exactly_once, database_url, subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

RECIPIENTS = 1_500
DROPS = 6
WORKER_NAME = "rally-fault-worker"


def drop_worker_connections():
    """Terminate every PostgreSQL backend the worker holds; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [WORKER_NAME],
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
def test_dropped_database_connections_mid_batch_send_nothing_twice(
    sink, broker, workers, chaos, batch, django_user_model
):
    interest, readers = subscribers(RECIPIENTS)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    # Long enough calls that most drops land while a batch is with the ESP.
    sink.set_faults(latency_ms=150)
    sink.fail_lookups(503)
    worker = workers(
        sink,
        batch=batch,
        DATABASE_URL=f"{database_url()}?application_name={WORKER_NAME}",
        RALLY_SEND_BATCH_SIZE="50" if batch else "40",
        RALLY_SEND_CONCURRENCY="8",
    )
    worker.start()
    services.mailing_send_now(mailing=mailing, actor=staff)

    dropped = []
    for share in sorted(chaos.uniform(0.05, 0.9) for _ in range(DROPS)):
        wait_until(lambda s=share: sink.count() >= RECIPIENTS * s, 90, worker)
        time.sleep(chaos.uniform(0, 0.15))
        dropped.append(drop_worker_connections())
    wait_until(lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker)

    reconnected = worker.log_count("Database connection lost while sending")
    print(f"Dropped {dropped} worker connections; the worker reconnected {reconnected} times")
    assert sum(dropped) > 0
    assert reconnected > 0, "no drop landed while a batch was with the ESP"
    assert worker.starts == 1
    assert_exactly_once(sink, mailing, readers)  # includes: every delivery "sent", none unknown
