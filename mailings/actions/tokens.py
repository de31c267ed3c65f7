"""
The signed link that confirms the choices made when signing an action.

It carries only the signature's id (no address), signed with its own salt, and
expires after RALLY_SIGNUP_CONFIRM_MAX_AGE seconds, as /join/'s link does. The
other supporter links live in mailings.tokens; this one belongs to actions.
"""

from django.conf import settings
from django.core import signing
from django.urls import reverse

CONFIRM_SALT = "rally.action-confirm"


def make_confirm_token(signature) -> str:
    return signing.dumps({"g": signature.pk}, salt=CONFIRM_SALT, compress=False)


def read_confirm_token(token):
    """Return the signature `token` was made for, or None if it is bad or expired."""
    from mailings.actions.models import Signature

    try:
        payload = signing.loads(
            token, salt=CONFIRM_SALT, max_age=settings.RALLY_SIGNUP_CONFIRM_MAX_AGE
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("g"), int):
        return None
    return Signature.objects.select_related("action", "supporter").filter(pk=payload["g"]).first()


def confirm_url(signature) -> str:
    path = reverse("action-confirm", args=[make_confirm_token(signature)])
    return f"{settings.SITE_URL}{path}"
