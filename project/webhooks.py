"""
Anymail's webhook URLs, behind a guard that answers hostile or broken calls
with a clear 4xx instead of a server error.

Anymail authenticates, parses and normalises the ESPs' webhooks; Rally mounts
every one of its tracking views (`/anymail/<esp>/tracking/`; Rally receives
no inbound mail) with `WebhookGuard` in front:

- an ESP whose webhook lacks its settings (Mandrill's or Postal's webhook
  key, Mailgun's signing key, boto3 for Amazon SES…): 404, as if not there;
- no ANYMAIL["WEBHOOK_SECRET"] while DEBUG is off: 403 for every call, so a
  forgotten secret never lets anyone post bounces and complaints;
- a body over RALLY_WEBHOOK_MAX_BYTES: 413, before the body is read;
- no or wrong basic-auth credentials (ANYMAIL["WEBHOOK_SECRET"]): 401;
- any other failed check, such as a wrong Mailgun signature: 403;
- a body Anymail cannot read (not JSON, JSON of the wrong shape, an event
  whose fields are not the text the ESP sends): 400.

Anymail itself answers 400 to a failed check and 500 to a body it cannot
parse, and ESPs retry a 500 for hours. An error while recording an event
(the database is down) still answers 500, so the ESP retries it later.
"""

import logging

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError, AnymailWebhookValidationFailure
from anymail.utils import get_request_basic_auth
from django.conf import settings
from django.http import Http404, HttpResponse
from django.urls import URLPattern
from django.utils.crypto import constant_time_compare

from mailings import tracking

logger = logging.getLogger(__name__)

# What Anymail's parsers raise on a body no ESP would send (json's errors and
# UnicodeDecodeError are ValueErrors). Database errors are none of these.
# OverflowError and OSError: a timestamp beyond what the platform's clock holds.
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, OSError)


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


class UnreadablePayload(Exception):
    """The webhook's body is not what the ESP sends."""


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


def _answer(status, text, headers=None):
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain", headers=headers)


class WebhookGuard:
    """Put in front of an Anymail webhook view (see the module docstring)."""

    # Why the ESP's view cannot work here (its settings are missing), or None.
    unavailable = None

    def __init__(self, **kwargs):
        # Anymail reads the ESP's settings when the view is made, once per
        # request, and raises if they are missing: a 500 for anyone who calls.
        try:
            super().__init__(**kwargs)
        except AnymailConfigurationError as error:
            self.unavailable = error

    def setup(self, request, *args, **kwargs):
        # Here, not in dispatch(): as_view() copies csrf_exempt from Anymail's dispatch().
        super().setup(request, *args, **kwargs)
        if self.esp_slug not in settings.RALLY_WEBHOOK_ESPS:
            # Only the ESPs Rally sends through have anything to report.
            raise Http404("No such webhook.")
        if self.unavailable is not None:
            self._not_configured(self.unavailable)

    def _not_configured(self, error):
        logger.warning("%s webhook called but not configured: %s", self.esp_name, error)
        raise Http404("No such webhook.") from error

    def post(self, request, *args, **kwargs):
        esp = self.esp_name
        if not getattr(self, "basic_auth", None) and not settings.DEBUG:
            # Anyone could otherwise post a bounce or complaint for any address.
            logger.warning(
                "%s webhook refused: ANYMAIL_WEBHOOK_SECRET is not set and DEBUG is off", esp
            )
            return _answer(403, "Webhooks are turned off until ANYMAIL_WEBHOOK_SECRET is set.")
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        if size > settings.RALLY_WEBHOOK_MAX_BYTES:
            logger.warning("%s webhook refused: body of %d bytes is over the limit", esp, size)
            return _answer(413, "Request body too large.")
        if not self._basic_auth_ok(request):
            logger.warning("%s webhook refused: missing or wrong basic auth", esp)
            # A 401 with a challenge: some senders (Amazon SNS) only send
            # credentials after one.
            return _answer(
                401, "Authentication required.", {"WWW-Authenticate": 'Basic realm="webhooks"'}
            )
        try:
            # A batch of events (SendGrid, Mailjet, SparkPost…) is recorded
            # with one INSERT when the view has dispatched them all.
            with tracking.events_collected():
                return super().post(request, *args, **kwargs)
        except AnymailWebhookValidationFailure as failure:
            logger.warning("%s webhook refused: %s", esp, failure.args[0] if failure.args else "")
            return _answer(403, "Webhook check failed.")
        except UnreadablePayload as problem:
            logger.warning("%s webhook refused: unreadable body (%s)", esp, problem)
            return _answer(400, "The request body is not a webhook this endpoint understands.")

    def _basic_auth_ok(self, request):
        allowed = getattr(self, "basic_auth", None)
        if not allowed:
            return True  # development only: post() refuses every call otherwise
        given = get_request_basic_auth(request) or ""
        return any(constant_time_compare(given, secret) for secret in allowed)

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except AnymailConfigurationError as error:
            # Mandrill reads its webhook key only here.
            self._not_configured(error)
        except UNREADABLE as error:
            raise UnreadablePayload(type(error).__name__) from error

    def parse_events(self, request):
        try:
            events = super().parse_events(request)
            for event in events:
                check_event(event)
            return events
        except UNREADABLE as error:
            raise UnreadablePayload(type(error).__name__) from error
        except AnymailConfigurationError as error:
            # E.g. an inbound-mail webhook pointed at the tracking URL: a
            # retry cannot help, the ESP's settings must change.
            logger.error("%s webhook misconfigured: %s", self.esp_name, error.args[0])
            raise UnreadablePayload("a payload of another kind") from error


def _guarded(pattern):
    # Every ESP Anymail supports, without listing them: subclass each view
    # with the guard in front and keep its URL, name and arguments.
    view = pattern.callback
    esp_slug = pattern.name.removesuffix("_webhook").removesuffix("_tracking")
    view_class = type(
        view.view_class.__name__, (WebhookGuard, view.view_class), {"esp_slug": esp_slug}
    )
    return URLPattern(
        pattern.pattern,
        view_class.as_view(**view.view_initkwargs),
        pattern.default_args,
        pattern.name,
    )


def _is_tracking(pattern):
    # Mandrill's one URL ("mandrill_webhook") takes tracking and inbound events.
    return pattern.name.endswith("_tracking_webhook") or pattern.name == "mandrill_webhook"


app_name = anymail_urls.app_name
urlpatterns = [_guarded(pattern) for pattern in anymail_urls.urlpatterns if _is_tracking(pattern)]
