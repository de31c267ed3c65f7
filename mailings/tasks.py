"""Celery entry points for mailings. Each takes ids and calls one service."""

from celery import shared_task

from mailings import sending, services, tracking


@shared_task(acks_late=True, ignore_result=True)
def start_mailing(mailing_id):
    """Resolve a sending mailing's audience into deliveries and start its senders."""
    services.mailing_start(mailing_id=mailing_id)


@shared_task(acks_late=True, ignore_result=True)
def send_mailing_batches(mailing_id):
    """Claim and send batches of deliveries until none are left (or hand over)."""
    sending.mailing_send_batches(mailing_id=mailing_id)


@shared_task(ignore_result=True)
def dispatch_due_mailings():
    """Start scheduled mailings whose time has come (run by Celery beat)."""
    services.mailings_dispatch_due()


@shared_task(ignore_result=True)
def sweep_sending():
    """Recover expired leases and restart stalled sending (run by Celery beat)."""
    sending.deliveries_sweep()


@shared_task(acks_late=True, ignore_result=True)
def apply_tracking_events():
    """Apply recorded tracking events to deliveries and supporters (queued as they arrive)."""
    tracking.delivery_events_apply_pending()
