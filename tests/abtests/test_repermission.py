"""Re-permission: quiet supporters are asked once; those who click stay, the rest are withdrawn."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from crm.models import ConsentRecord, Segment, Subscription, Supporter
from crm.services import segment_add_members
from mailings import repermission
from mailings.journeys import services as journey_services
from mailings.models import Delivery
from tests import factories
from tests.journeys.conftest import tick_and_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def quiet(interest):
    """Two supporters who have not opened or clicked anything in a year, in a static segment."""
    segment = Segment.objects.create(name="Quiet for a year", kind=Segment.Kind.STATIC)
    people = [
        factories.SupporterFactory(email=f"{name}@example.org", subscribed_to=[interest])
        for name in ("olu", "pat")
    ]
    segment_add_members(
        segment=segment, supporters=Supporter.objects.filter(pk__in=[p.pk for p in people])
    )
    return segment, people


def test_those_who_click_stay_and_the_silent_are_unsubscribed_with_a_consent_record(
    settings, quiet, interest, campaign_user
):
    settings.RALLY_TRACK_CLICKS = True
    segment, (olu, pat) = quiet
    journey = repermission.repermission_journey_create(
        segment=segment, interests=[interest], actor=campaign_user
    )
    journey_services.journey_start(journey=journey, actor=campaign_user)

    tick_and_send()
    assert sorted(m.to[0].split("<")[-1].rstrip(">") for m in mail.outbox) == [
        "olu@example.org",
        "pat@example.org",
    ]
    assert {m.subject for m in mail.outbox} == {"Do you still want to hear from us?"}
    Delivery.objects.filter(supporter=olu).update(clicked_at=timezone.now())

    with time_machine.travel(timezone.now() + timedelta(days=14, seconds=60), tick=False):
        for _ in range(4):
            tick_and_send()

    status = dict(Subscription.objects.values_list("supporter__email", "status"))
    assert status == {"olu@example.org": "subscribed", "pat@example.org": "unsubscribed"}
    withdrawn = ConsentRecord.objects.filter(
        supporter=pat, interest=interest, action=ConsentRecord.Action.WITHDRAWN
    )
    assert withdrawn.count() == 1
    assert withdrawn.get().actor_label == f"journey “Re-permission: {segment}”"
    assert ConsentRecord.objects.filter(supporter=olu, action="withdrawn").exists() is False
    assert len(mail.outbox) == 2  # asked once, nothing more


def test_without_click_tracking_the_journey_is_refused(settings, quiet, interest):
    settings.RALLY_TRACK_CLICKS = False
    with pytest.raises(journey_services.JourneyRefused, match="turn on click tracking"):
        repermission.repermission_journey_create(segment=quiet[0], interests=[interest])


def test_the_command_makes_a_draft_journey_for_staff_to_review(settings, quiet, interest):
    from django.core.management import call_command

    from mailings.journeys.models import Journey

    settings.RALLY_TRACK_CLICKS = True
    call_command(
        "create_repermission_journey", "--segment", "Quiet for a year", "--interest", interest.slug
    )
    journey = Journey.objects.get()
    assert journey.status == Journey.Status.DRAFT
    assert [step.describe() for step in journey.steps.all()] == [
        "Send “Do you still want to hear from us?”",
        "Wait 14 days",
        "If clicked a link in the previous email: go to step 5",
        "Unsubscribe from an interest: Responsibility to Protect",
        "End the journey",
    ]
