"""
The demo's welcome series for the atrocity-prevention campaign: three emails,
written with the composer's blocks, for everyone who confirms a sign-up from
now on (welcome; what R2P is and what the UK has signed up to; one thing to do).
Live from the moment the demo is seeded, so signing up on /join/ starts it.
Links point at example.org.
"""

from django.db import transaction

from crm.models import CampaignInterest
from mailings.composer.blocks import clean_blocks
from mailings.journeys import services
from mailings.journeys.models import Journey, JourneyStep

NAME = "Welcome series: atrocity prevention"

WELCOME = [
    {"type": "heading", "level": 1, "text": "Welcome to the campaign"},
    {
        "type": "text",
        "html": '<p>Dear {{ first_name|default:"friend" }},</p>'
        "<p>Thank you for joining the campaign for a world that acts before atrocities, not "
        "after them. You are one of thousands of people across the UK asking our government "
        "to put prevention first.</p>"
        "<p>Over the next week we will send you two short emails: what the Responsibility to "
        "Protect is and what the UK has promised, and one thing you can do this month. After "
        "that you will hear from us about the topics you chose, and you can change them at "
        "any time.</p>",
    },
    {
        "type": "button",
        "label": "See what the campaign is doing",
        "url": "https://example.org/campaign",
    },
    {"type": "text", "html": "<p>With thanks,<br>The campaign team</p>"},
]

WHAT_R2P_IS = [
    {"type": "heading", "level": 1, "text": "What the Responsibility to Protect is"},
    {
        "type": "text",
        "html": '<p>Dear {{ first_name|default:"friend" }},</p>'
        "<p>In 2005 every member of the United Nations, the United Kingdom among them, agreed "
        "that each state must protect its people from genocide, war crimes, ethnic cleansing "
        "and crimes against humanity, that other states should help it do so, and that when a "
        "state fails, the world must act, by peaceful means first.</p>",
    },
    {
        "type": "quote",
        "html": "<p>Each individual State has the responsibility to protect its populations "
        "from genocide, war crimes, ethnic cleansing and crimes against humanity.</p>",
        "cite": "2005 World Summit Outcome, paragraph 138",
    },
    {"type": "heading", "level": 2, "text": "What the UK has signed up to"},
    {
        "type": "text",
        "html": "<p>The UK is a permanent member of the UN Security Council and has said it "
        "will put atrocity prevention at the heart of its foreign policy. Partners such as "
        "Protection Approaches, Waging Peace and the Aegis Trust track whether it does: "
        "whether warning signs are acted on, and whether aid, trade and diplomacy are used "
        "to prevent violence rather than respond to it.</p>",
    },
    {"type": "button", "label": "Read the briefing", "url": "https://example.org/r2p-briefing"},
    {"type": "text", "html": "<p>The campaign team</p>"},
]

ONE_ACTION = [
    {"type": "heading", "level": 1, "text": "One thing you can do this month"},
    {
        "type": "action",
        "headline": "Ask your MP to back a UK atrocity-prevention strategy",
        "html": "<p>MPs count their letters. Five minutes is enough: we have written a "
        "draft you can make your own.</p>",
        "label": "Write to your MP",
        "url": "https://example.org/write-to-your-mp",
    },
    {
        "type": "text",
        "html": '<p>Thank you, {{ first_name|default:"friend" }}. Every letter brings '
        "prevention closer to the top of the government's list.</p>"
        "<p>The campaign team</p>",
    },
]

EMAILS = [
    ("Welcome to the campaign", "Thank you for joining: here is what comes next.", WELCOME),
    (
        "What the UK has promised: the Responsibility to Protect",
        "Three minutes on the promise every UN member made in 2005.",
        WHAT_R2P_IS,
    ),
    (
        '{{ first_name|default:"Friend" }}, one thing you can do this month',
        "Five minutes to write to your MP.",
        ONE_ACTION,
    ),
]


def _blocks(spec):
    return clean_blocks([{**block, "id": f"w{n}"} for n, block in enumerate(spec, start=1)])


def demo_journeys() -> dict:
    """Create the demo welcome series (once) and start it; return how many journeys exist."""
    if Journey.objects.filter(name=NAME).exists():
        return {"journeys": Journey.objects.count()}
    interests = list(
        CampaignInterest.objects.filter(slug__in=["atrocity-prevention", "r2p"])
    ) or list(CampaignInterest.objects.filter(is_public=True))
    with transaction.atomic():
        journey = Journey.objects.create(
            name=NAME,
            description="Everyone who joins on the website: welcome, what R2P is, one action.",
            trigger=Journey.Trigger.SIGNUP,
        )
        journey.interests.set(interests)
        steps = [
            ("email", {}),
            ("wait", {"wait_days": 2}),
            ("email", {}),
            ("wait", {"wait_days": 3, "wait_weekday": None, "wait_hour": 10}),
            ("email", {}),
        ]
        emails = iter(EMAILS)
        for position, (kind, values) in enumerate(steps, start=1):
            step = JourneyStep.objects.create(
                journey=journey, position=position, kind=kind, **values
            )
            if kind == JourneyStep.Kind.EMAIL:
                subject, preheader, blocks = next(emails)
                mailing = services.journey_email_create(step=step)
                mailing.subject = subject
                mailing.preheader = preheader
                mailing.blocks = _blocks(blocks)
                mailing.save()
    services.journey_start(journey=journey, actor=None)
    return {"journeys": Journey.objects.count()}
