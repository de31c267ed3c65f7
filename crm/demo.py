"""
Demo data: the charity's real campaign themes and partners, and as many
made-up supporters as asked for, with subscriptions and consent history.

Rows are written with bulk inserts in chunks, so 100,000 supporters take
seconds, not minutes. Every supporter address is at example.org, a domain
reserved for examples, so demo data can never reach a real person.
"""

import datetime
import random

from django.db import transaction
from django.utils import timezone

from crm.models import (
    CampaignInterest,
    ConsentRecord,
    LawfulBasis,
    PartnerOrganisation,
    Segment,
    SegmentMembership,
    Subscription,
    Supporter,
    Suppression,
    Tag,
    email_hash,
)
from crm.services.segments import segment_sizes_refresh

INTERESTS = [
    (
        "atrocity-prevention",
        "Atrocity prevention",
        "How the UK can spot the warning signs of mass atrocities and act before violence starts.",
    ),
    (
        "r2p",
        "Responsibility to Protect",
        "The international commitment to protect populations from genocide, war crimes, ethnic "
        "cleansing and crimes against humanity, and how the UK lives up to it.",
    ),
    (
        "un-security-council",
        "UK at the UN Security Council",
        "Briefings on Security Council debates and how the UK votes and speaks.",
    ),
    (
        "refugees",
        "Refugees fleeing atrocity crimes",
        "Safe routes and protection for people escaping atrocities, and what you can ask of MPs.",
    ),
    (
        "events",
        "Events and actions",
        "Invitations to talks, vigils and lobby days, and quick actions you can take from home.",
    ),
]
INTERNAL_INTERESTS = [
    (
        "parliamentary-network",
        "Parliamentary network",
        "Staff-only list of supporters who help with parliamentary work.",
    ),
]

PARTNERS = [
    ("Protection Approaches", "protection-approaches", "https://protectionapproaches.org"),
    ("Waging Peace", "waging-peace", "https://wagingpeace.info"),
    ("Aegis Trust", "aegis-trust", "https://www.aegistrust.org"),
    ("Jo Cox Foundation", "jo-cox-foundation", "https://www.jocoxfoundation.org"),
    ("Stand UK", "stand-uk", "https://standuk.org"),
    ("ICR2P", "icr2p", "https://www.responsibilitytoprotect.org"),
]

FIRST_NAMES = [
    "Aisha",
    "Amelia",
    "Ben",
    "Chloe",
    "Daniel",
    "Fatima",
    "Grace",
    "Hannah",
    "Ibrahim",
    "Isla",
    "Jack",
    "James",
    "Kwame",
    "Leila",
    "Liam",
    "Maya",
    "Mohammed",
    "Niamh",
    "Oliver",
    "Priya",
    "Rhys",
    "Sofia",
    "Tomasz",
    "Yusuf",
    "Zara",
    "Ewan",
    "Olu",
    "Ruth",
    "Sam",
    "Anna",
]
LAST_NAMES = [
    "Ahmed",
    "Brown",
    "Campbell",
    "Davies",
    "Evans",
    "Green",
    "Hughes",
    "Igwe",
    "Jones",
    "Khan",
    "Lewis",
    "Murphy",
    "Nowak",
    "O'Brien",
    "Patel",
    "Roberts",
    "Smith",
    "Taylor",
    "Thomas",
    "Walker",
    "Williams",
    "Wilson",
    "Wright",
    "Young",
    "Ali",
    "Kaur",
]
POSTCODE_AREAS = [
    "SW1A",
    "E1",
    "N1",
    "SE1",
    "W1",
    "NW1",
    "M1",
    "B1",
    "LS1",
    "G1",
    "EH1",
    "CF10",
    "BT1",
    "BS1",
    "NE1",
    "L1",
    "OX1",
    "CB1",
    "BN1",
    "EX1",
]
TAGS = ["volunteer", "donor", "event-attendee", "mp-letter-writer", "press"]

WORDING = (
    "Yes, I would like to hear from the campaign by email about the topics I have chosen. "
    "I can unsubscribe at any time."
)
WORDING_VERSION = "2026-01"


def demo_seed(*, supporters: int = 2_000, seed: int = 2026, chunk: int = 5_000) -> dict:
    """Create the demo data; return how many of each thing now exist."""
    rng = random.Random(seed)
    with transaction.atomic():
        interests = _interests()
        partners = _partners()
        tags = [Tag.objects.get_or_create(name=name)[0] for name in TAGS]
    public = [i for i in interests if i.is_public]
    start = Supporter.objects.count()
    for offset in range(0, supporters, chunk):
        with transaction.atomic():
            _supporters(
                rng, start + offset, min(chunk, supporters - offset), public, partners, tags
            )
    with transaction.atomic():
        _segments(interests, partners)
    segment_sizes_refresh()  # the segment list shows sizes as last counted
    return {
        "supporters": Supporter.objects.count(),
        "interests": len(interests),
        "partners": len(partners),
    }


def _interests():
    interests = []
    for position, (slug, name, description) in enumerate(INTERESTS + INTERNAL_INTERESTS):
        interest, _ = CampaignInterest.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "position": position * 10,
                "is_public": (slug, name, description) in INTERESTS,
            },
        )
        interests.append(interest)
    return interests


def _partners():
    partners = []
    for name, slug, website in PARTNERS:
        partner, _ = PartnerOrganisation.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "website": website,
                "agreement_date": datetime.date(2025, 9, 1),
                "lawful_basis": LawfulBasis.CONSENT,
            },
        )
        partners.append(partner)
    return partners


def _supporters(rng, start, count, interests, partners, tags):
    now = timezone.now()
    rows = []
    for n in range(start, start + count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{n}@example.org".lower().replace("'", "")
        from_partner = rng.random() < 0.4
        status = rng.choices(
            [Supporter.Status.ACTIVE, Supporter.Status.UNSUBSCRIBED, Supporter.Status.BOUNCED],
            weights=[92, 6, 2],
        )[0]
        rows.append(
            Supporter(
                email=email,
                email_hash=email_hash(email),
                first_name=first,
                last_name=last,
                postcode=f"{rng.choice(POSTCODE_AREAS)} {rng.randint(1, 9)}{rng.choice('ABDEFGH')}"
                f"{rng.choice('JLNPQRSTUWXYZ')}",
                country=rng.choices(["GB", "IE", "FR", "US"], weights=[90, 4, 3, 3])[0],
                source=(
                    Supporter.Source.PARTNER_IMPORT
                    if from_partner
                    else rng.choice(
                        [
                            Supporter.Source.SIGNUP_FORM,
                            Supporter.Source.EVENT,
                            Supporter.Source.PETITION,
                        ]
                    )
                ),
                partner=rng.choice(partners) if from_partner else None,
                status=status,
                created_at=now
                - datetime.timedelta(days=rng.randint(0, 1500), seconds=rng.randint(0, 86_400)),
            )
        )
    created = Supporter.objects.bulk_create(rows, batch_size=2_000)

    subscriptions, records, tag_links, suppressed = [], [], [], []
    for supporter in created:
        chosen = rng.sample(interests, rng.randint(1, 3))
        # Those who left did so some time after joining, as people do.
        left_at = supporter.created_at + (now - supporter.created_at) * rng.random()
        for interest in chosen:
            subscribed = supporter.status == Supporter.Status.ACTIVE
            subscriptions.append(
                Subscription(
                    supporter=supporter,
                    interest=interest,
                    status=(
                        Subscription.Status.SUBSCRIBED
                        if subscribed
                        else Subscription.Status.UNSUBSCRIBED
                    ),
                    subscribed_at=supporter.created_at,
                    unsubscribed_at=None if subscribed else left_at,
                )
            )
            records.append(
                ConsentRecord(
                    supporter=supporter,
                    interest=interest,
                    action=ConsentRecord.Action.GRANTED,
                    method=(
                        ConsentRecord.Method.PARTNER_IMPORT
                        if supporter.partner_id
                        else ConsentRecord.Method.SIGNUP_FORM
                    ),
                    partner_id=supporter.partner_id,
                    wording="" if supporter.partner_id else WORDING,
                    wording_version="" if supporter.partner_id else WORDING_VERSION,
                    actor_label="demo data",
                    created_at=supporter.created_at,
                )
            )
        if supporter.status != Supporter.Status.ACTIVE:
            records.append(
                ConsentRecord(
                    supporter=supporter,
                    interest=None,
                    action=ConsentRecord.Action.WITHDRAWN,
                    method=(
                        ConsentRecord.Method.BOUNCE
                        if supporter.status == Supporter.Status.BOUNCED
                        else ConsentRecord.Method.EMAIL_LINK
                    ),
                    actor_label="demo data",
                    created_at=left_at,
                )
            )
        if supporter.status == Supporter.Status.BOUNCED:
            suppressed.append(
                Suppression(email_hash=supporter.email_hash, reason=Suppression.Reason.HARD_BOUNCE)
            )
        if rng.random() < 0.15:
            tag_links.append(
                Supporter.tags.through(supporter_id=supporter.pk, tag_id=rng.choice(tags).pk)
            )
    Subscription.objects.bulk_create(subscriptions, batch_size=5_000)
    ConsentRecord.objects.bulk_create(records, batch_size=5_000)
    Supporter.tags.through.objects.bulk_create(tag_links, batch_size=5_000)
    Suppression.objects.bulk_create(suppressed, batch_size=5_000, ignore_conflicts=True)


def _segments(interests, partners):
    Segment.objects.get_or_create(
        name="London R2P supporters",
        defaults={
            "kind": Segment.Kind.RULES,
            "description": (
                "Subscribed to Responsibility to Protect, with a central London postcode."
            ),
            "rules": {
                "interests": ["r2p"],
                "postcode_prefixes": ["SW1", "E1", "N1", "SE1", "W1"],
                "statuses": ["active"],
            },
        },
    )
    Segment.objects.get_or_create(
        name="Came from Protection Approaches",
        defaults={"kind": Segment.Kind.RULES, "rules": {"partners": ["protection-approaches"]}},
    )
    lobby, created = Segment.objects.get_or_create(
        name="Lobby day volunteers",
        defaults={
            "kind": Segment.Kind.STATIC,
            "description": (
                "People who offered to meet their MP at the atrocity-prevention lobby day."
            ),
        },
    )
    if created:
        ids = Supporter.objects.active().tagged("volunteer").values_list("pk", flat=True)[:40]
        SegmentMembership.objects.bulk_create(
            [SegmentMembership(segment=lobby, supporter_id=pk) for pk in ids]
        )
