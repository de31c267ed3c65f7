"""
The demo's petition: an open action at /act/protect-civilians-in-sudan/, co-sponsored by
Waging Peace and Aegis Trust (each with its own opt-in box), with a few hundred
signatures from demo supporters, so its page, count and results have something to show.
Links point at example.org.
"""

import random

from django.db import transaction

from crm.models import CampaignInterest, PartnerOrganisation, Supporter
from mailings.actions.models import Action, ActionPartner, Signature
from mailings.composer.blocks import clean_blocks

SLUG = "protect-civilians-in-sudan"

TEXT = [
    {"type": "heading", "level": 2, "text": "Civilians in Darfur need protection now"},
    {
        "type": "text",
        "html": "<p>Reports from El Fasher describe killings of civilians because of who they "
        "are. The UK holds the pen on Sudan at the UN Security Council and has committed, "
        "under the Responsibility to Protect, to act when a population faces atrocity "
        "crimes.</p>"
        "<p>We ask the Foreign Secretary to:</p>"
        "<ul><li>press for an independent mechanism to protect civilians in Darfur;</li>"
        "<li>fund the documentation of atrocities so those responsible face justice;</li>"
        "<li>publish the UK's atrocity-risk assessment for Sudan.</li></ul>",
    },
    {
        "type": "quote",
        "html": "<p>Prevention is possible when governments act on the warning signs.</p>",
        "cite": "Protection Approaches",
    },
]

COSPONSORS = [
    (
        "waging-peace",
        "Yes, Waging Peace may email me about its work for people affected by the conflict "
        "in Sudan.",
        "https://example.org/waging-peace/privacy",
    ),
    (
        "aegis-trust",
        "Yes, Aegis Trust may email me about its campaigns to prevent genocide.",
        "https://example.org/aegis-trust/privacy",
    ),
]


def demo_actions(signatures=300):
    """Create the demo petition and its signatures once; return what was made."""
    if Action.objects.filter(slug=SLUG).exists():
        return {"actions": 0}
    with transaction.atomic():
        action = Action.objects.create(
            kind=Action.Kind.PETITION,
            title="Protect civilians in Darfur",
            slug=SLUG,
            status=Action.Status.OPEN,
            summary="The UK must use its seat on the Security Council to protect civilians "
            "in Darfur from atrocity crimes.",
            blocks=clean_blocks(TEXT),
            target="The Foreign Secretary",
            fields=["first_name", "last_name", "postcode"],
            goal=1000,
            button_label="Sign the petition",
        )
        action.interests.set(
            CampaignInterest.objects.filter(slug__in=["r2p", "atrocity-prevention"])
        )
        for position, (slug, wording, privacy_url) in enumerate(COSPONSORS):
            partner = PartnerOrganisation.objects.filter(slug=slug).first()
            if partner is not None:
                ActionPartner.objects.create(
                    action=action,
                    partner=partner,
                    wording=wording,
                    privacy_url=privacy_url,
                    shared_fields=["first_name", "last_name", "postcode"],
                    position=position,
                )
        # Demo supporters sign straight into the table: they are people already on the
        # list, and no confirmation email is sent for them.
        mailable = list(Supporter.objects.mailable().values_list("pk", flat=True)[:2000])
        chosen = random.Random(7).sample(mailable, k=min(signatures, len(mailable)))
        partners = {p.partner.slug: p.partner for p in action.cosponsors.select_related("partner")}
        rows = []
        for index, supporter_id in enumerate(chosen):
            slug = ("waging-peace", "aegis-trust", "", "")[index % 4]
            rows.append(
                Signature(
                    action=action,
                    supporter_id=supporter_id,
                    source=slug,
                    source_partner=partners.get(slug),
                    confirmation=Signature.Confirmation.NONE,
                )
            )
        Signature.objects.bulk_create(rows)
    return {"actions": 1, "signatures": len(rows)}
