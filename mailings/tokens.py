"""
Signed links for supporters, one salt per purpose.

Preference, unsubscribe and data-download tokens carry the supporter's id and
link version, signed with SECRET_KEY: unguessable, tamper-evident and not
derived from the email address. Staff revoke every link a supporter was ever
sent by bumping `link_version` (crm.services.supporter_revoke_links).
Preference and unsubscribe links do not expire, since an unsubscribe link must
keep working for as long as the email sits in an inbox; data-download links
expire after RALLY_DATA_LINK_MAX_AGE seconds.

Sign-up confirmation and "email me my link" tokens carry an address that is
not (yet) a supporter's, so they are encrypted as well as signed (Fernet, keyed
from SECRET_KEY): the address never shows in a URL, a proxy's access log or the
task queue. A pending sign-up lives only in its token, so nothing unconfirmed
is stored and nothing needs purging; the token expires after
RALLY_SIGNUP_CONFIRM_MAX_AGE seconds.

Every reader returns None for a bad, expired or revoked token, never raises.
Tests move the clock with time-machine or by replacing `now`.
"""

import base64
import json
import re
import time
import zlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.crypto import salted_hmac

PREFERENCES_SALT = "rally.preferences"
UNSUBSCRIBE_SALT = "rally.unsubscribe"
DATA_DOWNLOAD_SALT = "rally.data-download"
SIGNUP_SALT = "rally.signup"
LINK_REQUEST_SALT = "rally.link-request"


def now() -> float:
    """Return the current time in seconds; replace in tests to move the clock."""
    return time.time()


def _sign(salt, payload):
    return signing.dumps(payload, salt=salt, compress=False)


def _unsign(salt, token):
    try:
        payload = signing.loads(token, salt=salt)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def _fresh(payload, max_age):
    """Return `payload` if it was issued no more than `max_age` seconds ago."""
    issued = payload.get("t") if payload else None
    if not isinstance(issued, int | float):
        return None
    age = now() - issued
    # A token from the future was not made by this clock: treat it as bad.
    return payload if -60 <= age <= max_age else None


# What the pages behind a link read of the supporter.
LINK_FIELDS = ("id", "email", "first_name", "last_name", "postcode", "status", "link_version")


def _supporter(payload):
    from crm.models import Supporter
    from mailings import sql

    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        return None
    # Every page behind a link starts here, and asks "may we email them?"
    # next: answered in the same query (see mailings.selfservice.may_email).
    # Only the columns the pages show: the others load if something asks.
    found = sql.supporter_for_link(payload["s"], LINK_FIELDS)
    supporter = found[0] if found else None
    if supporter is None or supporter.link_version != payload.get("v"):
        return None
    if supporter.status == Supporter.Status.ERASED:
        return None
    return supporter


# Preference centre -----------------------------------------------------------


def make_preferences_token(supporter):
    return _sign(PREFERENCES_SALT, {"s": supporter.pk, "v": supporter.link_version})


def read_preferences_token(token):
    """Return the supporter `token` was made for, or None if it is not valid."""
    return _supporter(_unsign(PREFERENCES_SALT, token))


def preferences_url(supporter):
    path = reverse("preferences", args=[make_preferences_token(supporter)])
    return f"{settings.SITE_URL}{path}"


# One-click unsubscribe ---------------------------------------------------------


def make_unsubscribe_token(supporter, mailing=None):
    payload = {"s": supporter.pk, "v": supporter.link_version}
    if mailing is not None:
        payload["m"] = mailing.pk
    return _sign(UNSUBSCRIBE_SALT, payload)


def read_unsubscribe_token(token):
    """Return (supporter, mailing id or None), or (None, None) if not valid."""
    payload = _unsign(UNSUBSCRIBE_SALT, token)
    supporter = _supporter(payload)
    if supporter is None:
        return None, None
    mailing_id = payload.get("m")
    return supporter, mailing_id if isinstance(mailing_id, int) else None


def unsubscribe_url(supporter, mailing=None):
    path = reverse("unsubscribe", args=[make_unsubscribe_token(supporter, mailing)])
    return f"{settings.SITE_URL}{path}"


# "Download my data" --------------------------------------------------------------


def make_data_download_token(supporter):
    payload = {"s": supporter.pk, "v": supporter.link_version, "t": int(now())}
    return _sign(DATA_DOWNLOAD_SALT, payload)


def read_data_download_token(token):
    """Return the supporter, or None if the token is bad, revoked or too old."""
    payload = _fresh(_unsign(DATA_DOWNLOAD_SALT, token), settings.RALLY_DATA_LINK_MAX_AGE)
    return _supporter(payload)


def data_download_url(supporter):
    path = reverse("data-download", args=[make_data_download_token(supporter)])
    return f"{settings.SITE_URL}{path}"


# Encrypted tokens: pending sign-ups and link requests ------------------------------


def _fernet(salt):
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    keys = [
        Fernet(
            base64.urlsafe_b64encode(
                salted_hmac(salt, "fernet", secret=s, algorithm="sha256").digest()
            )
        )
        for s in secrets
    ]
    return MultiFernet(keys)


def _seal(salt, payload):
    data = zlib.compress(json.dumps(payload, separators=(",", ":")).encode())
    return _fernet(salt).encrypt_at_time(data, int(now())).decode()


# A Fernet token as issued: URL-safe base64. The decoder skips characters
# outside that alphabet, so without this check a link with any inserted
# (":", "!", "~"…) would still open.
FERNET_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _open(salt, token, max_age):
    if not isinstance(token, str) or not FERNET_TOKEN.fullmatch(token):
        return None
    try:
        data = _fernet(salt).decrypt_at_time(token.encode(), max_age, int(now()))
        payload = json.loads(zlib.decompress(data))
    except (InvalidToken, ValueError, TypeError, AttributeError, zlib.error):
        return None
    return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class PendingSignup:
    """A sign-up waiting for its confirmation; it lives only in its token.

    Built by mailings.selfservice.signup_pending with the consent wording (and
    its version) shown on the form, so the consent recorded at confirmation
    is exactly what the person read.
    """

    email: str
    first_name: str = ""
    last_name: str = ""
    postcode: str = ""
    interest_ids: tuple[int, ...] = ()
    wording: str = ""
    wording_version: str = ""
    ip_address: str | None = None


# The token carries one-letter keys, which keep confirmation links short.
# Links already emailed carry them too: renaming a key would break those links.


def make_signup_token(signup: PendingSignup) -> str:
    """Seal a pending sign-up into a confirmation token."""
    payload = {
        "e": signup.email,
        "f": signup.first_name,
        "l": signup.last_name,
        "p": signup.postcode,
        "i": list(signup.interest_ids),
        "w": signup.wording,
        "wv": signup.wording_version,
        "ip": signup.ip_address,
    }
    return _seal(SIGNUP_SALT, payload)


def read_signup_token(token) -> PendingSignup | None:
    """Return the pending sign-up, or None if the token is bad or has expired."""
    payload = _open(SIGNUP_SALT, token, settings.RALLY_SIGNUP_CONFIRM_MAX_AGE)
    if payload is None or not isinstance(payload.get("e"), str):
        return None
    return PendingSignup(
        email=payload["e"],
        first_name=payload.get("f", ""),
        last_name=payload.get("l", ""),
        postcode=payload.get("p", ""),
        interest_ids=tuple(payload.get("i") or ()),
        wording=payload.get("w", ""),
        wording_version=payload.get("wv", ""),
        ip_address=payload.get("ip"),
    )


def signup_confirm_url(token):
    path = reverse("signup-confirm", args=[token])
    return f"{settings.SITE_URL}{path}"


def make_link_request_token(email: str) -> str:
    """Seal an address someone asked us to send a preference link to."""
    return _seal(LINK_REQUEST_SALT, {"e": email})


def read_link_request_token(token) -> str | None:
    """Return the address, or None; link requests are served within a day."""
    payload = _open(LINK_REQUEST_SALT, token, 24 * 3600)
    email = payload.get("e") if payload else None
    return email if isinstance(email, str) else None
