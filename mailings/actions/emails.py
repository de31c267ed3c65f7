"""The email asking a signer to confirm the choices they made (double opt-in)."""

import logging

from django.conf import settings

from crm.models import PartnerOrganisation
from mailings import notices, selfservice
from mailings.actions import tokens
from mailings.actions.models import Signature

logger = logging.getLogger(__name__)


def notice_action_confirmation(*, signature_id: int) -> bool:
    """Email the confirmation link for a signature's pending opt-ins; return True if sent.

    Nothing is sent once they are confirmed, or to an address we must not email.
    """
    signature = (
        Signature.objects.select_related("action", "supporter").filter(pk=signature_id).first()
    )
    if signature is None or signature.confirmation != Signature.Confirmation.PENDING:
        logger.info("Action confirmation not sent: signature %s has nothing pending", signature_id)
        return False
    if selfservice.address_refused(signature.supporter.email):
        logger.info("Action confirmation not sent: signature %s may not be emailed", signature_id)
        return False
    partners = PartnerOrganisation.objects.filter(
        pk__in=[choice["partner"] for choice in signature.partner_choices]
    )
    # The notices' sender and layout; the templates are this app's
    # (templates/email/notices/action_confirm_*).
    notices._send(
        "action_confirm",
        signature.supporter.email,
        {
            "first_name": signature.supporter.first_name,
            "action": signature.action,
            "opted_in": signature.opted_in,
            "interests": list(signature.action.interests.all()),
            "partners": list(partners),
            "confirm_url": tokens.confirm_url(signature),
            "max_age_days": settings.RALLY_SIGNUP_CONFIRM_MAX_AGE // 86400,
        },
    )
    return True
