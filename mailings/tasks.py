"""Celery entry points for mailings. Each takes ids and calls one service."""

from celery import shared_task

from mailings import sending, services, tracking


@shared_task(acks_late=True, ignore_result=True)
def start_mailing(mailing_id):
    """Resolve a sending mailing's audience into deliveries and start its senders."""
    services.mailing_start(mailing_id=mailing_id)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def send_mailing_batches(self, mailing_id):
    """Claim and send batches of deliveries until none are left (or hand over).

    Deliveries waiting to be tried again (or a pause the ESP asked for) are
    waited for by a successor queued for that time, not by a sleeping task.
    """
    if sending.mailing_send_batches(mailing_id=mailing_id) != "waiting" or self.request.is_eager:
        return
    wait = sending.mailing_resume_in(mailing_id=mailing_id)
    if wait is not None:
        self.apply_async((mailing_id,), countdown=wait)


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
