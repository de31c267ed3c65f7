"""The cast of the journey tests: a welcome series, someone who signs up, and a clock."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from crm.models import ConsentRecord
from crm.services import consent_grant
from mailings import sending
from mailings.journeys import engine, services
from mailings.journeys.models import Journey, JourneyStep
from mailings.models import Delivery, Mailing
from tests import factories


def build_journey(interests, steps, *, name="Welcome series", **fields):
    """Return a draft journey of `steps`, (kind, {field: value}); emails get a subject and body."""
    journey = Journey.objects.create(name=name, **fields)
    journey.interests.set(interests)
    for position, (kind, values) in enumerate(steps, start=1):
        values = dict(values)
        subject = values.pop("subject", None)
        step = JourneyStep.objects.create(journey=journey, position=position, kind=kind, **values)
        if kind == JourneyStep.Kind.EMAIL:
            mailing = services.journey_email_create(step=step)
            mailing.subject = subject or f"Email at step {position}"
            mailing.body_html = '<p>Dear {{ first_name|default:"friend" }}, welcome.</p>'
            mailing.save()
    return journey


def email(subject):
    return (JourneyStep.Kind.EMAIL, {"subject": subject})


def wait(days=None, **values):
    return (JourneyStep.Kind.WAIT, {"wait_days": days, **values})


def tick_and_send(now=None):
    """Run one journey tick and send what it queued, as beat and the sending workers would."""
    result = engine.journeys_tick()
    for mailing_id in (
        Delivery.objects.filter(status=Delivery.Status.QUEUED, mailing__kind="journey")
        .values_list("mailing_id", flat=True)
        .distinct()
    ):
        sending.mailing_send_batches(mailing_id=mailing_id)
    return result


def subjects_to(address):
    return [m.subject for m in mail.outbox if any(address in to for to in m.to)]


def sign_up(supporter, interest):
    """The supporter confirms a sign-up on the website for `interest`."""
    consent_grant(
        supporter=supporter,
        interest=interest,
        method=ConsentRecord.Method.SIGNUP_FORM,
        actor_label="sign-up form, confirmed by email",
    )


@pytest.fixture(autouse=True)
def _look_again_at_once(settings):
    """Someone whose previous email is not sent yet is looked at again at the next tick."""
    settings.RALLY_JOURNEY_POLL_SECONDS = 0


@pytest.fixture
def welcome(db, interest):
    """Welcome series: welcome, wait 2 days, what R2P is, wait 3 days, take action."""
    return build_journey(
        [interest],
        [
            email("Welcome to the campaign"),
            wait(2),
            email("What R2P is"),
            wait(3),
            email("One thing you can do"),
        ],
    )


@pytest.fixture
def live_welcome(welcome, campaign_user):
    return services.journey_start(journey=welcome, actor=campaign_user)


@pytest.fixture
def newcomer(db, interest):
    """Nina: joins by signing up on the website after the journey went live."""
    nina = factories.SupporterFactory(email="nina@example.org", first_name="Nina")
    return nina


@pytest.fixture
def later():
    """Return a moment `days` (journey days) from now."""

    def at(days=0, seconds=0):
        return timezone.now() + timedelta(days=days, seconds=seconds)

    return at


__all__ = ["Mailing"]
