"""
Signed links for supporters, one salt per purpose.

Tokens carry the supporter's id and link version, signed with SECRET_KEY:
unguessable, tamper-evident and not derived from the email address. Staff
revoke every link a supporter was ever sent by bumping `link_version`
(crm.services.supporter_revoke_links). Links do not expire by default, since
an unsubscribe link must keep working for as long as the email sits in an
inbox; pass `max_age` where a purpose needs one.
"""

from django.conf import settings
from django.core import signing
from django.urls import reverse

PREFERENCES_SALT = "rally.preferences"
UNSUBSCRIBE_SALT = "rally.unsubscribe"


def _sign(salt, payload):
    return signing.dumps(payload, salt=salt, compress=False)


def _unsign(salt, token, max_age=None):
    try:
        return signing.loads(token, salt=salt, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None


def _supporter(payload):
    from crm.models import Supporter

    if not isinstance(payload, dict):
        return None
    supporter = Supporter.objects.filter(pk=payload.get("s")).first()
    if supporter is None or supporter.link_version != payload.get("v"):
        return None
    if supporter.status == Supporter.Status.ERASED:
        return None
    return supporter


def make_preferences_token(supporter):
    return _sign(PREFERENCES_SALT, {"s": supporter.pk, "v": supporter.link_version})


def read_preferences_token(token):
    """Return the supporter `token` was made for, or None if it is not valid."""
    return _supporter(_unsign(PREFERENCES_SALT, token))


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
    return supporter, payload.get("m")


def preferences_url(supporter):
    path = reverse("preferences", args=[make_preferences_token(supporter)])
    return f"{settings.SITE_URL}{path}"


def unsubscribe_url(supporter, mailing=None):
    path = reverse("unsubscribe", args=[make_unsubscribe_token(supporter, mailing)])
    return f"{settings.SITE_URL}{path}"
