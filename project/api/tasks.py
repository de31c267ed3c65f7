"""Celery entry points for outbound webhooks: thin, taking ids, safe to repeat."""

from celery import shared_task

from project.api import webhooks


@shared_task(acks_late=True)
def deliver_webhook(delivery_id):
    webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task
def webhooks_fan_out():
    """Turn new events into deliveries, then queue every delivery that is due."""
    webhooks.webhooks_fan_out()
    _queue_due()


@shared_task
def webhooks_requeue():
    """Queue deliveries whose retry time has come or whose worker died; forget old ones."""
    _queue_due()
    webhooks.webhooks_forget_delivered()


def _queue_due():
    for delivery_id in webhooks.webhooks_due():
        deliver_webhook.delay(delivery_id)
