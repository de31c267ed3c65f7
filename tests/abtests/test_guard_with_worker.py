"""A real worker on Redis sends to the ESP simulator while the ESP reports hard bounces
for a stale part of the list: sending pauses by itself, and once resumed everyone
else gets the newsletter exactly once.
"""

import pytest

from mailings import services
from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory
from tests.integration.harness import Worker, bounce_back, subscribers, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def test_bounces_reported_mid_send_pause_the_mailing_then_resume_sends_the_rest_once(
    tmp_path, client, sink, broker, django_user_model
):
    interest, supporters = subscribers(300)
    gone = {s.email for s in supporters[::8]}  # one address in eight no longer exists
    mailing = MailingFactory(name="Partner list welcome", interests=[interest])
    staff = django_user_model.objects.create_user("carl", is_staff=True)
    worker = Worker(
        tmp_path, sink, batch=False, RALLY_SEND_RATE="40", RALLY_GUARD_CHECK_SECONDS="0.2"
    )
    worker.start()
    try:
        services.mailing_send_now(mailing=mailing, actor=staff)
        seen = 0

        def paused():
            nonlocal seen
            seen = bounce_back(client, sink, gone, since=seen)
            return Mailing.objects.filter(pk=mailing.pk, status="paused").exists()

        wait_until(paused, 90, worker)
        mailing.refresh_from_db()
        assert mailing.guard_tripped == "bounces"
        sent_when_paused = sink.count()
        assert sent_when_paused < len(supporters)
        assert Delivery.objects.filter(mailing=mailing, status="queued").exists()

        services.mailing_resume(mailing=mailing, actor=staff)
        wait_until(
            lambda: Mailing.objects.filter(pk=mailing.pk, status="sent").exists(), 90, worker
        )
    finally:
        worker.kill()

    received = sink.recipients()
    assert len(received) == len(set(received)) == len(supporters)
    statuses = set(Delivery.objects.filter(mailing=mailing).values_list("status", flat=True))
    assert statuses == {"sent"}
