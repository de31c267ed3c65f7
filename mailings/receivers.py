"""Anymail signal receivers, connected in MailingsConfig.ready()."""

from anymail import signals
from django.dispatch import receiver

from mailings import tracking


@receiver(signals.tracking, dispatch_uid="mailings.record_tracking_event")
def record_tracking_event(sender, event, esp_name, **kwargs):
    # Anymail has already checked the webhook's credentials and signature.
    # Recorded here, applied by a worker (mailings.tracking). An exception
    # answers 500, so the ESP retries: only a broken database gets that far.
    tracking.delivery_record_event(event=event, esp_name=esp_name)
