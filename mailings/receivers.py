"""Anymail signal receivers, connected in MailingsConfig.ready()."""

from anymail.signals import tracking
from django.dispatch import receiver

from mailings import services


@receiver(tracking, dispatch_uid="mailings.record_tracking_event")
def record_tracking_event(sender, event, esp_name, **kwargs):
    # Anymail has already checked the webhook's credentials and signature.
    # An exception here answers 500, so the ESP retries later: only a broken
    # database should get that far.
    services.delivery_record_event(event=event, esp_name=esp_name)
