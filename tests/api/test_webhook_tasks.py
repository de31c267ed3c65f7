"""The beat tasks: fan-out queues what it made, requeue sends what became due."""

import datetime

import pytest
import time_machine
from django.utils import timezone

from crm.services import consent_grant
from project.api import tasks
from project.api.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_fan_out_task_sends_new_events_and_requeue_retries_them(
    supporter, endpoint, receiver, other_interest, tasks_run_now
):
    """An event reaches the receiver through the tasks; a failure is sent again once due."""
    receiver.statuses = [502]
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")

    tasks.webhooks_fan_out.delay()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)

    tasks.webhooks_requeue.delay()  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=2)):
        tasks.webhooks_requeue.delay()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver.requests) == 2
