"""
A real Celery worker, a real Redis broker and the ESP simulator: the worker is
killed with SIGKILL mid-send and restarted, the queue is wiped, and still every
recipient gets the newsletter exactly once.
"""

import pytest
from django.db.models import F

from mailings import services
from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory
from tests.integration.harness import Worker, assert_exactly_once, subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.mark.parametrize("batch", [False, True], ids=["individual", "batch"])
def test_killed_worker_restarts_and_every_reader_gets_it_once(
    tmp_path, sink, broker, batch, django_user_model
):
    interest, supporters = subscribers(400)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = Worker(tmp_path, sink, batch=batch)
    worker.start()
    try:
        services.mailing_send_now(mailing=mailing, actor=staff)
        for share in (0.2, 0.55):
            wait_until(lambda s=share: sink.count() >= len(supporters) * s, 90, worker)
            worker.kill()
            worker.start()
        wait_until(
            lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker
        )
    finally:
        worker.kill()

    assert worker.starts == 3
    assert_exactly_once(sink, mailing, supporters)
    # The kills landed mid-send: some deliveries were claimed again, or found at the
    # ESP by the sweeper (recorded as sent when they were dispatched).
    deliveries = Delivery.objects.filter(mailing=mailing)
    reclaimed = deliveries.filter(attempts__gt=1).count()
    found_at_esp = deliveries.filter(sent_at=F("dispatched_at")).count()
    assert reclaimed + found_at_esp > 0


def test_lost_queue_is_rebuilt_from_the_database(tmp_path, sink, broker, django_user_model):
    """A broker restart without persistence loses every queued task; sending resumes anyway."""
    interest, supporters = subscribers(300)
    mailing = MailingFactory(interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = Worker(tmp_path, sink, batch=False)
    worker.start()
    try:
        services.mailing_send_now(mailing=mailing, actor=staff)
        wait_until(lambda: sink.count() >= 60, 90, worker)
        worker.kill()
        broker.flushdb()  # the broker comes back empty
        worker.start()
        wait_until(
            lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 120, worker
        )
    finally:
        worker.kill()

    assert_exactly_once(sink, mailing, supporters)
