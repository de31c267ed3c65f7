"""
What differs between email service providers, as lookup tables.

Anymail hides most differences; three remain for a sending engine:

* which ESPs can personalise one API call for many recipients from inline
  content (merge_data), and with what placeholder syntax (BATCH_SYNTAX);
* what an Anymail error means: retry later, slow down, or give up on this
  recipient (classify(), the only place that decides);
* how to ask the ESP whether it accepted a message whose answer we never
  got because the worker died mid-call (FATE_LOOKUPS), so a delivery is
  neither sent twice nor dropped.
"""

import datetime
import email.utils
import logging
from dataclasses import dataclass

import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.core import mail

logger = logging.getLogger(__name__)

# Anymail esp_name → placeholder for a merge_data key in inline subject/text/HTML.
# Postmark is absent: it personalises batches only through stored templates.
BATCH_SYNTAX = {
    "Mailgun": "%recipient.{}%",
    "Test": "%recipient.{}%",
}
# Recipients per API call the ESP allows.
BATCH_LIMIT = {"Mailgun": 1000, "Test": 1000}


def batch_syntax(connection):
    """Return the placeholder format for batch sending through `connection`, or None."""
    return BATCH_SYNTAX.get(getattr(connection, "esp_name", ""))


TRANSIENT = "transient"  # try again later (outage, timeout, 5xx)
SLOW_DOWN = "slow_down"  # 429: wait as long as the ESP asks, and do not count the attempt
PERMANENT = "permanent"  # this message will never be accepted as it is


@dataclass
class Outcome:
    kind: str
    reason: str
    retry_after: float | None = None


def _retry_after(response):
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def classify(error):
    """Return the Outcome an exception from an Anymail send means."""
    if isinstance(error, AnymailRecipientsRefused):
        return Outcome(PERMANENT, "The ESP refused the recipient (invalid, bounced or blocked).")
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        response = getattr(error, "response", None)
        if status == 429:
            return Outcome(
                SLOW_DOWN, "The ESP asked us to slow down (429).", _retry_after(response)
            )
        if status is None or status >= 500 or status in (408, 409, 425):
            return Outcome(TRANSIENT, f"ESP unavailable ({status or 'no answer'}).")
        if status in (401, 403):
            # Wrong or revoked credentials: fixable by staff, so never fail the
            # whole list for it. Say so loudly.
            logger.error("The ESP refused Rally's credentials (HTTP %s); check ANYMAIL.", status)
            return Outcome(TRANSIENT, f"The ESP refused our credentials ({status}).")
        return Outcome(PERMANENT, f"The ESP refused the message ({status}): {_short(error)}")
    if isinstance(error, AnymailError):
        return Outcome(PERMANENT, f"Rejected before sending: {_short(error)}")
    return Outcome(TRANSIENT, f"{type(error).__name__} while sending.")


def _short(error):
    # The ESP's own words, which staff can act on; stored on the delivery
    # (erased with the supporter), never logged.
    description = getattr(error, "description", None) or str(error).split("\n")[0]
    return description[:300]


def rejected_statuses():
    """Anymail per-recipient statuses that mean "not sent, and it won't be"."""
    return {"rejected", "invalid", "failed"}


# -- fate lookups -------------------------------------------------------------------------


class LookupUnavailable(Exception):
    """The ESP cannot answer "did you accept this message?" right now or at all."""


def _postmark(connection, *, delivery_id, address, since, sender):
    """Postmark's outbound message search, filtered by our metadata."""
    response = requests.get(
        f"{connection.api_url}messages/outbound",
        params={
            "count": 50,
            "offset": 0,
            "recipient": address,
            "metadata_delivery_id": str(delivery_id),
        },
        headers={"Accept": "application/json", "X-Postmark-Server-Token": connection.server_token},
        timeout=30,
    )
    if response.status_code != 200:
        raise LookupUnavailable(f"Postmark message search answered {response.status_code}.")
    for item in response.json().get("Messages", []):
        if str((item.get("Metadata") or {}).get("delivery_id")) == str(delivery_id):
            return item.get("MessageID") or "accepted"
    return None


def _mailgun(connection, *, delivery_id, address, since, sender):
    """Mailgun's events API: an "accepted" event for the recipient with our variables."""
    # Events are kept per sending domain: the one Anymail sent from.
    domain = connection.sender_domain or email.utils.parseaddr(sender)[1].rpartition("@")[2]
    if not domain:
        raise LookupUnavailable("No Mailgun sending domain to search; set MAILGUN_SENDER_DOMAIN.")
    url = f"{connection.api_url.rstrip('/')}/{domain}/events"
    params = {
        "event": "accepted",
        "recipient": address,
        "begin": email.utils.format_datetime(since - datetime.timedelta(minutes=5), usegmt=True),
        "ascending": "yes",
        "limit": 300,
    }
    response = requests.get(url, params=params, auth=("api", connection.api_key), timeout=30)
    if response.status_code != 200:
        raise LookupUnavailable(f"Mailgun events answered {response.status_code}.")
    for item in response.json().get("items", []):
        variables = item.get("user-variables") or {}
        if str(variables.get("delivery_id")) == str(delivery_id):
            headers = (item.get("message") or {}).get("headers") or {}
            message_id = headers.get("message-id")
            # Events name the message without the angle brackets the send API
            # (and so Anymail, and tracking events) put around it.
            return f"<{message_id.strip('<>')}>" if message_id else "accepted"
    return None


def _test(connection, *, delivery_id, address, since, sender):
    """Anymail's test backend keeps messages in django.core.mail.outbox."""
    for message in getattr(mail, "outbox", []):
        params = getattr(message, "anymail_test_params", {})
        if str(params.get("metadata", {}).get("delivery_id")) == str(delivery_id):
            return "test"
        merge = params.get("merge_metadata") or {}
        if str(merge.get(address, {}).get("delivery_id")) == str(delivery_id):
            return "test"
    return None


FATE_LOOKUPS = {"Postmark": _postmark, "Mailgun": _mailgun, "Test": _test}


def accepted_message_id(connection, *, delivery_id, address, since, sender=""):
    """Return the ESP's message id if it accepted delivery `delivery_id`, else None.

    `address` is the recipient, `since` when the message was handed to the ESP and
    `sender` the From address it was sent with.

    Raise LookupUnavailable when the ESP cannot tell (no such API, or an error).
    """
    lookup = FATE_LOOKUPS.get(getattr(connection, "esp_name", ""))
    if lookup is None:
        raise LookupUnavailable("This ESP offers no way to look up a sent message.")
    try:
        return lookup(
            connection, delivery_id=delivery_id, address=address, since=since, sender=sender
        )
    except (requests.RequestException, ValueError, AttributeError) as error:
        raise LookupUnavailable(f"{type(error).__name__} asking the ESP.") from error
