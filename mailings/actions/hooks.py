"""What actions add to crm (registered in ActionsConfig.ready through crm.extensions)."""

from django.urls import reverse

from crm.models import PartnerConsent
from crm.services.partner_consent import partner_consents_erase
from crm.timeline import Entry
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


def timeline(*, supporter, before, limit) -> list:
    """The actions the supporter signed, and their opt-ins to partners, newest first."""
    signatures = Signature.objects.filter(supporter=supporter).select_related(
        "action", "source_partner"
    )
    consents = PartnerConsent.objects.filter(supporter=supporter).select_related("partner")
    if before is not None:
        signatures = signatures.filter(created_at__lt=before)
        consents = consents.filter(created_at__lt=before)
    entries = []
    for signature in signatures.order_by("-created_at", "-id")[:limit]:
        text = f"Signed “{signature.action.title}”"
        if signature.source_partner:
            text += f", through {signature.source_partner.name}"
        elif signature.source:
            text += f" (source: {signature.source})"
        if signature.opted_in:
            text += "; ticked the box to hear from us"
        entries.append(
            Entry(
                signature.created_at,
                "Action",
                text,
                link=reverse("admin:actions_action_change", args=[signature.action_id]),
                link_text="The action",
            )
        )
    for record in consents.order_by("-created_at", "-id")[:limit]:
        if record.action == PartnerConsent.Action.GRANTED:
            shared = ", ".join(name.replace("_", " ") for name in record.fields)
            text = f"Opted in to hear from {record.partner.name}"
            text += f" (shared: email address{', ' + shared if shared else ''})"
        else:
            text = f"Opt-in to {record.partner.name} withdrawn"
        entries.append(
            Entry(
                record.created_at,
                "Consent",
                text,
                detail=f"“{record.wording}”" if record.wording else "",
                detail_title=record.wording,
                who=record.source,
            )
        )
    entries.sort(key=lambda entry: entry.when, reverse=True)
    return entries[:limit]
