"""Celery entry points for mailings. Each takes ids and calls one service."""

import logging
import random

from anymail.exceptions import AnymailError
from celery import shared_task
from django.conf import settings

from mailings import abtests, esp, notices, reports, sending, services, tracking

logger = logging.getLogger(__name__)


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


@shared_task(ignore_result=True)
def finish_ab_tests():
    """Send the winner of A/B tests whose time is up to the rest (run by Celery beat)."""
    abtests.abtests_finish_due()


@shared_task(ignore_result=True)
def refresh_recent_stats():
    """Count again the figures of mailings sent in the last 30 days (run by Celery beat)."""
    reports.stats_refresh_recent()


@shared_task(acks_late=True, ignore_result=True)
def apply_tracking_events():
    """Apply recorded tracking events to deliveries and supporters (queued as they arrive)."""
    tracking.delivery_events_apply_pending()


# Notices to one person (mailings.notices): thin, safe to repeat (a repeat sends
# one more copy of a notice, which is harmless). When the ESP fails they try
# again, backing off from 10 seconds to 10 minutes, for about a day: someone who
# signs up during an ESP outage still gets their confirmation. A notice the ESP
# refuses for good (an invalid address, a rejected message) is not tried again.
#
# These tasks were defined in mailings.notices and keep the names they were
# registered under there, so messages already queued under those names when a
# new release is deployed still find their task.

RETRY_MAX_SECONDS = 600
MAX_RETRIES = 150


def _deliver(task, notice, **kwargs):
    try:
        notice(**kwargs)
    except (AnymailError, ConnectionError, TimeoutError) as error:
        outcome = esp.classify(error)
        if outcome.kind == esp.PERMANENT:
            logger.warning("%s: the ESP refused the notice (%s)", task.name, type(error).__name__)
            return
        countdown = retry_delay(task.request.retries, outcome) * random.uniform(0.8, 1.2)
        raise task.retry(exc=error, countdown=countdown, max_retries=MAX_RETRIES) from error


def retry_delay(retries, outcome):
    """Return the seconds to wait before try number `retries` + 2 of a notice."""
    if outcome.kind == esp.SLOW_DOWN and outcome.retry_after:
        return outcome.retry_after
    return min(RETRY_MAX_SECONDS, settings.RALLY_NOTICE_RETRY_SECONDS * 2**retries)


@shared_task(bind=True, name="mailings.notices.send_signup_confirmation")
def send_signup_confirmation(self, token):
    _deliver(self, notices.notice_signup_confirmation, token=token)


@shared_task(bind=True, name="mailings.notices.send_preferences_link")
def send_preferences_link(self, token):
    _deliver(self, notices.notice_preferences_link, token=token)


@shared_task(bind=True, name="mailings.notices.send_data_download")
def send_data_download(self, supporter_id):
    _deliver(self, notices.notice_data_download, supporter_id=supporter_id)
