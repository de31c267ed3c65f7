"""
Anymail's tracking webhooks, each wrapped in a view that answers hostile or
broken calls with a clear 4xx instead of a server error.

Anymail authenticates (basic auth, the ESP's own signature), parses and
normalises the ESPs' webhooks and sends each event through its `tracking`
signal. Rally mounts every one of Anymail's tracking views
(`/anymail/<esp>/tracking/`; Rally receives no inbound mail), each called
from `guarded()`, which answers around it:

- an ESP Rally does not send through (settings.RALLY_WEBHOOK_ESPS), or whose
  webhook lacks its settings (Mandrill's or Postal's webhook key, Mailgun's
  signing key, boto3 for Amazon SES…): 404, as if not there;
- no ANYMAIL["WEBHOOK_SECRET"] while DEBUG is off: 403 for every call, so a
  forgotten secret never lets anyone post bounces and complaints;
- a body over RALLY_WEBHOOK_MAX_BYTES: 413, before the body is read;
- no credentials: 401 with a challenge (as Anymail's Amazon SES view does);
  wrong credentials, which Anymail's basic-auth check refuses: 401;
- any other failed check, such as a wrong Mailgun signature: 403;
- a body Anymail cannot read (not JSON, JSON of the wrong shape), or an
  event whose fields are not the text the ESP sends (mailings.receivers
  refuses it): 400.

Anymail itself answers 400 to a failed check and 500 to a body it cannot
parse, and ESPs retry a 500 for hours. An error while recording an event
(the database is down) still answers 500, so the ESP retries it later.
"""

import logging
import traceback

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError, AnymailWebhookValidationFailure
from anymail.webhooks.base import AnymailBasicAuthMixin, AnymailCoreWebhookView
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt

from mailings import tracking
from mailings.exceptions import UnreadablePayload

logger = logging.getLogger(__name__)

# What Anymail's parsers raise on a body no ESP would send (json's errors and
# UnicodeDecodeError are ValueErrors). Database errors are none of these.
# OverflowError and OSError: a timestamp beyond what the platform's clock holds.
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, OSError)

# The Anymail methods whose errors mean something particular here; a test
# (tests/security/test_webhook_anymail_pins.py) notices when Anymail changes them.
BASIC_AUTH_CHECK = AnymailBasicAuthMixin.validate_request  # wrong credentials: 401
VALIDATORS = AnymailCoreWebhookView.run_validators  # missing settings: 404


def _answer(status, text, headers=None):
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain", headers=headers)


def _raised_in(error, function):
    """Return True if `error` was raised inside `function` (or what it called)."""
    code = function.__code__
    return any(frame.f_code is code for frame, _ in traceback.walk_tb(error.__traceback__))


def _not_found(esp_name, error):
    logger.warning("%s webhook called but not configured: %s", esp_name, error)
    return Http404("No such webhook.")


def _refusal(request, view):
    """Return the answer to a POST refused before Anymail reads it, or None."""
    esp = view.esp_name
    if not view.basic_auth and not settings.DEBUG:
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
    if view.basic_auth and not request.META.get("HTTP_AUTHORIZATION"):
        return _unauthorised(esp)
    return None


def _unauthorised(esp):
    logger.warning("%s webhook refused: missing or wrong basic auth", esp)
    # A 401 with a challenge: some senders (Amazon SNS) only send credentials after one.
    return _answer(401, "Authentication required.", {"WWW-Authenticate": 'Basic realm="webhooks"'})


def guarded(view_class, esp_slug, **initkwargs):
    """Return a view that calls Anymail's `view_class` behind the checks above."""

    @csrf_exempt
    @login_not_required
    def webhook(request, *args, **kwargs):
        if esp_slug not in settings.RALLY_WEBHOOK_ESPS:
            # Only the ESPs Rally sends through have anything to report.
            raise Http404("No such webhook.")
        try:
            # Anymail reads the ESP's settings here, once per request, and
            # raises if they are missing: a 500 for anyone who calls.
            view = view_class(**initkwargs)
        except AnymailConfigurationError as error:
            raise _not_found(view_class.esp_name, error) from error
        if request.method == "POST":
            refusal = _refusal(request, view)
            if refusal is not None:
                return refusal
        # What View.as_view() does with the instance it made.
        view.setup(request, *args, **kwargs)
        try:
            # A batch of events (SendGrid, Mailjet, SparkPost…) is recorded
            # with one INSERT when the view has dispatched them all; if the
            # block raises, none of them is.
            with tracking.events_collected():
                try:
                    return view.dispatch(request, *args, **kwargs)
                except UNREADABLE as error:
                    raise UnreadablePayload(type(error).__name__) from error
        except AnymailWebhookValidationFailure as failure:
            if _raised_in(failure, BASIC_AUTH_CHECK):
                return _unauthorised(view.esp_name)
            logger.warning(
                "%s webhook refused: %s", view.esp_name, failure.args[0] if failure.args else ""
            )
            return _answer(403, "Webhook check failed.")
        except AnymailConfigurationError as error:
            if _raised_in(error, VALIDATORS):
                # Mandrill reads its webhook key only when it checks a call.
                raise _not_found(view.esp_name, error) from error
            # E.g. an inbound-mail webhook pointed at the tracking URL: a
            # retry cannot help, the ESP's settings must change.
            logger.error("%s webhook misconfigured: %s", view.esp_name, error.args[0])
            return _unreadable(view.esp_name, "a payload of another kind")
        except UnreadablePayload as problem:
            return _unreadable(view.esp_name, problem)

    webhook.esp_slug = esp_slug
    webhook.view_class = view_class
    return webhook


def _unreadable(esp, problem):
    logger.warning("%s webhook refused: unreadable body (%s)", esp, problem)
    return _answer(400, "The request body is not a webhook this endpoint understands.")


def _guarded(pattern):
    # Every ESP Anymail supports, without listing them: wrap each view and
    # keep its URL, name and arguments.
    view = pattern.callback
    esp_slug = pattern.name.removesuffix("_webhook").removesuffix("_tracking")
    return URLPattern(
        pattern.pattern,
        guarded(view.view_class, esp_slug, **view.view_initkwargs),
        pattern.default_args,
        pattern.name,
    )


def _is_tracking(pattern):
    # Mandrill's one URL ("mandrill_webhook") takes tracking and inbound events.
    return pattern.name.endswith("_tracking_webhook") or pattern.name == "mandrill_webhook"


app_name = anymail_urls.app_name
urlpatterns = [_guarded(pattern) for pattern in anymail_urls.urlpatterns if _is_tracking(pattern)]
