"""Anymail signal receivers, connected in MailingsConfig.ready()."""

from anymail import signals
from django.dispatch import receiver

from mailings import tracking
from mailings.exceptions import UnreadablePayload

# Anymail copies these from the ESP's JSON as they come; ESPs send text (or
# nothing), and for ids text or a number (Postmark's bounce ids, Postal's
# message ids), so anything else is junk, not an event.
TEXT_FIELDS = (
    "recipient",
    "reject_reason",
    "description",
    "mta_response",
    "click_url",
    "user_agent",
)
ID_FIELDS = ("event_id", "message_id")


def check_event(event):
    """Raise UnreadablePayload unless `event`'s fields have the types ESPs send."""
    for name in TEXT_FIELDS:
        value = getattr(event, name, None)
        if value is not None and not isinstance(value, str):
            raise UnreadablePayload(f"{name} is not text")
    for name in ID_FIELDS:
        value = getattr(event, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise UnreadablePayload(f"{name} is neither text nor a number")
    if not isinstance(getattr(event, "metadata", None) or {}, dict):
        raise UnreadablePayload("metadata is not an object")
    tags = getattr(event, "tags", None) or []
    # Postal sends its one tag as null when there is none.
    if not isinstance(tags, list) or not all(isinstance(tag, str | None) for tag in tags):
        raise UnreadablePayload("tags are not a list of text")


@receiver(signals.tracking, dispatch_uid="mailings.record_tracking_event")
def record_tracking_event(sender, event, esp_name, **kwargs):
    # Anymail has already checked the webhook's credentials and signature.
    # Junk fields raise UnreadablePayload, which the webhook answers with a
    # 400 (mailings.webhooks); as the events of a request are recorded
    # together when all have arrived, a batch with one bad event records none.
    check_event(event)
    # Recorded here, applied by a worker (mailings.tracking). Any other
    # exception answers 500, so the ESP retries: only a broken database gets
    # that far.
    tracking.delivery_record_event(event=event, esp_name=esp_name)
