"""The webhook request records an event; a worker on the "webhooks" queue applies it."""

import json
import logging

import pytest
from django.db import OperationalError

from crm.models import Supporter, Suppression
from mailings import tracking
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, SupporterFactory
from tests.mailings.test_tracking_webhooks import AUTH, postmark_bounce

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "rally:webhook-secret"}


@pytest.fixture
def readers(newsletter, interest):
    """John and Jane, each sent the newsletter."""
    return [
        DeliveryFactory(
            mailing=newsletter,
            supporter=SupporterFactory(email=f"{name}@example.com", subscribed_to=[interest]),
            status=Delivery.Status.SENT,
            esp_message_id=f"message-{name}",
        )
        for name in ("john", "jane")
    ]


def post_bounce(client, delivery, bounce_id):
    response = client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(postmark_bounce(delivery, bounce_id=bounce_id)),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 200


def status(delivery):
    return Supporter.objects.get(pk=delivery.supporter_id).status


def test_webhook_records_the_event_and_the_worker_applies_it(client, readers):
    john = readers[0]

    post_bounce(client, john, bounce_id=1)

    event = DeliveryEvent.objects.get()
    assert (event.delivery_id, event.event_type, event.pending) == (john.pk, "bounced", True)
    assert status(john) == Supporter.Status.ACTIVE
    assert not Suppression.objects.exists()

    assert tracking.delivery_events_apply_pending() == 1

    event.refresh_from_db()
    assert event.pending is False
    assert status(john) == Supporter.Status.BOUNCED
    assert Suppression.objects.count() == 1
    assert tracking.delivery_events_apply_pending() == 0


def test_arriving_events_queue_the_worker(
    client, readers, tasks_run_now, fresh_cache, django_capture_on_commit_callbacks
):
    """Recording queues mailings.tasks.apply_tracking_events once the events are committed."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        post_bounce(client, readers[0], bounce_id=1)

    assert len(callbacks) == 1
    assert status(readers[0]) == Supporter.Status.BOUNCED
    assert not DeliveryEvent.objects.filter(pending=True).exists()


def test_an_event_that_cannot_be_applied_is_set_aside_and_the_rest_go_on(
    client, readers, monkeypatch, caplog
):
    john, jane = readers
    post_bounce(client, john, bounce_id=1)
    post_bounce(client, jane, bounce_id=2)
    real = tracking.supporter_mark_undeliverable

    def broken_for_john(*, supporter, **kwargs):
        if supporter.pk == john.supporter_id:
            raise ValueError("a bug that only John's event meets")
        return real(supporter=supporter, **kwargs)

    monkeypatch.setattr(tracking, "supporter_mark_undeliverable", broken_for_john)

    with caplog.at_level(logging.ERROR, logger="mailings.tracking"):
        tracking.delivery_events_apply_pending()

    assert status(jane) == Supporter.Status.BOUNCED
    assert status(john) == Supporter.Status.ACTIVE
    assert not DeliveryEvent.objects.filter(pending=True).exists()
    set_aside = DeliveryEvent.objects.get(delivery=john)
    assert set_aside.pending is False
    assert f"Tracking events {set_aside.pk} could not be applied" in caplog.text
    assert "john@example.com" not in caplog.text


def test_a_database_outage_leaves_the_events_for_the_next_run(client, readers, monkeypatch):
    post_bounce(client, readers[0], bounce_id=1)

    def database_gone(events):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(tracking, "_apply_to_deliveries", database_gone)
    with pytest.raises(OperationalError, match="closed the connection"):
        tracking.delivery_events_apply_pending()

    assert DeliveryEvent.objects.get().pending is True
    monkeypatch.undo()
    assert tracking.delivery_events_apply_pending() == 1
    assert status(readers[0]) == Supporter.Status.BOUNCED
