from celery import shared_task

from mailings.actions import emails, services
from mailings.tasks import _deliver


# Safe to repeat (one more copy of a confirmation is harmless); retried as the
# other notices are when the ESP fails (mailings.tasks._deliver).
@shared_task(bind=True, name="mailings.actions.send_action_confirmation")
def send_action_confirmation(self, signature_id):
    _deliver(self, emails.notice_action_confirmation, signature_id=signature_id)


# Queued by the first signer with a box ticked while none is waiting, and by
# beat (actions-send-confirmations) should that one be lost.
@shared_task(name="mailings.actions.send_confirmations")
def send_confirmations():
    services.action_confirmations_send()
