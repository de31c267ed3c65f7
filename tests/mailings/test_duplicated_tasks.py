"""Duplicated sending tasks (a redelivered message, an over-eager sweeper) send nothing twice."""

import threading
from collections import Counter

import pytest
from django.db import connection

from mailings import sending, throttle
from mailings.models import Mailing
from tests.factories import MailingFactory, SupporterFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_many_senders_at_once_share_the_work(settings, postmark_esp, interest, fresh_cache):
    throttle.clear()
    settings.RALLY_SEND_BATCH_SIZE = 7
    readers = [SupporterFactory(subscribed_to=[interest]) for _ in range(60)]
    mailing = MailingFactory(interests=[interest])
    count = sending.mailing_resolve_audience(mailing=mailing)
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENDING, recipient_count=count
    )

    def sender():
        try:
            sending.mailing_send_batches(mailing_id=mailing.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(postmark_esp.recipients()) == Counter({r.email: 1 for r in readers})
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT
