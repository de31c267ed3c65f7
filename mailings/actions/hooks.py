"""What actions add to crm (registered in ActionsConfig.ready through crm.extensions)."""

from crm.services.partner_consent import partner_consents_erase
from mailings.actions.models import Signature


def erase_signatures(*, supporter):
    """Forget where and from what address the supporter signed, and their partner opt-ins.

    The signatures stay (an erased supporter still counts towards a total
    they added to) but hold nothing about the person.
    """
    Signature.objects.filter(supporter=supporter).update(
        page_url="", ip_address=None, wording="", partner_choices=[]
    )
    partner_consents_erase(supporter=supporter)


def export_signatures(*, supporter) -> dict:
    """The actions the supporter signed and the partners they opted in to, for their data export."""
    signatures = Signature.objects.filter(supporter=supporter).select_related("action")
    return {
        "actions_signed": [
            {
                "action": signature.action.title,
                "signed_at": signature.created_at.isoformat(),
                "source": signature.source,
                "opted_in": signature.opted_in,
                "partners_chosen": [choice["partner"] for choice in signature.partner_choices],
            }
            for signature in signatures
        ],
        "partner_opt_ins": [
            {
                "partner": record.partner.name,
                "action": record.get_action_display(),
                "fields": record.fields,
                "wording": record.wording,
                "at": record.created_at.isoformat(),
            }
            for record in supporter.partner_consents.select_related("partner")
        ],
    }
