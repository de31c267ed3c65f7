"""
Re-permission: ask supporters who have gone quiet whether they still want to hear
from the charity, and stop emailing those who do not answer.

Mail to people who never open it tells mailbox providers the charity's mail is
unwanted, and consent given years ago grows stale. `repermission_journey_create`
makes a draft journey (mailings.journeys) for a segment of quiet supporters:

1. the email "Do you still want to hear from us?", with one button to stay;
2. a wait of `wait_days` (14 by default);
3. whoever clicked a link in it carries on as before (the journey ends for them);
4. everyone else is unsubscribed from each of the journey's interests, each with a
   withdrawn consent record written by the consent services, as any journey's
   "unsubscribe from an interest" step does.

A click is the answer, not an open: Apple Mail opens every message by itself, so
an open would keep people who never saw the question. So the ESP must track
clicks (RALLY_TRACK_CLICKS), or nobody could answer and everyone would be
withdrawn: creating the journey is refused without it.
"""

from django.conf import settings
from django.db import transaction

from mailings.composer.blocks import clean_blocks
from mailings.journeys import services as journey_services
from mailings.journeys.models import Journey, JourneyStep

SUBJECT = "Do you still want to hear from us?"
PREHEADER = "One click keeps you on the list. Otherwise we will stop emailing you."


def _blocks(site_url):
    return clean_blocks(
        [
            {"id": "r1", "type": "heading", "level": 1, "text": SUBJECT},
            {
                "id": "r2",
                "type": "text",
                "html": '<p>Dear {{ first_name|default:"friend" }},</p>'
                "<p>We have not heard from you in a while, and we only want to email people "
                "who want to hear from us. If you would like to keep getting our news about "
                "preventing atrocities, and what you can do, press the button below.</p>"
                "<p>If we do not hear from you in the next two weeks, we will stop emailing "
                "you. You can sign up again at any time.</p>",
            },
            {"id": "r3", "type": "button", "label": "Yes, keep me on the list", "url": site_url},
            {"id": "r4", "type": "text", "html": "<p>Thank you,<br>The campaign team</p>"},
        ]
    )


def repermission_journey_create(
    *, segment, interests, name: str = "", wait_days: int = 14, actor=None
) -> Journey:
    """Return a new draft journey asking `segment`'s members to stay, withdrawing the silent.

    `interests` are the topics it is about: its email goes to members subscribed
    to any of them, and those who do not click are unsubscribed from each.
    Staff review the email and start the journey. Raise JourneyRefused (a
    MailingRefused) when click tracking is off or no interest is given.
    """
    interests = list(interests)
    if not settings.RALLY_TRACK_CLICKS:
        raise journey_services.JourneyRefused(
            "A re-permission journey keeps those who click: turn on click tracking "
            "(RALLY_TRACK_CLICKS) first, or nobody could answer and everyone would be "
            "unsubscribed."
        )
    if not interests:
        raise journey_services.JourneyRefused("Choose the interests the journey asks about.")
    steps = [
        (JourneyStep.Kind.EMAIL, {}),
        (JourneyStep.Kind.WAIT, {"wait_days": wait_days}),
        # Answered: on to the end, still subscribed.
        (
            JourneyStep.Kind.BRANCH,
            {"condition": JourneyStep.Condition.CLICKED, "branch_to": 4 + len(interests)},
        ),
        *((JourneyStep.Kind.INTEREST_REMOVE, {"interest": interest}) for interest in interests),
        (JourneyStep.Kind.END, {}),
    ]
    with transaction.atomic():
        journey = Journey.objects.create(
            name=name or f"Re-permission: {segment}"[:200],
            description=(
                f"Asks the members of “{segment}” whether they still want email; those "
                f"who do not click within {wait_days} days are unsubscribed."
            ),
            trigger=Journey.Trigger.SEGMENT,
            trigger_segment=segment,
            created_by=actor,
        )
        journey.interests.set(interests)
        for position, (kind, values) in enumerate(steps, start=1):
            step = JourneyStep.objects.create(
                journey=journey, position=position, kind=kind, **values
            )
            if kind == JourneyStep.Kind.EMAIL:
                mailing = journey_services.journey_email_create(step=step, actor=actor)
                mailing.subject = SUBJECT
                mailing.preheader = PREHEADER
                mailing.blocks = _blocks(settings.SITE_URL.rstrip("/") + "/")
                mailing.save()
    return journey
