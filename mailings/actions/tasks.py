from celery import shared_task

from mailings.actions import emails
from mailings.tasks import _deliver


# Safe to repeat (one more copy of a confirmation is harmless); retried as the
# other notices are when the ESP fails (mailings.tasks._deliver).
@shared_task(bind=True, name="mailings.actions.send_action_confirmation")
def send_action_confirmation(self, signature_id):
    _deliver(self, emails.notice_action_confirmation, signature_id=signature_id)
