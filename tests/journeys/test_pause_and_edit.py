"""A live journey can be paused, resumed and edited without losing anyone's place."""

import pytest
import time_machine

from mailings.journeys import services
from mailings.journeys.models import Enrolment, Journey, JourneyStep
from mailings.models import Delivery, Mailing
from tests.journeys.conftest import email, sign_up, subjects_to, tick_and_send, wait

pytestmark = pytest.mark.django_db


def test_pause_holds_everyone_and_resume_carries_on(
    live_welcome, newcomer, interest, later, campaign_user
):
    """While paused nobody moves and no journey email goes; on resume the due email goes once."""
    sign_up(newcomer, interest)
    tick_and_send()
    services.journey_pause(journey=live_welcome, actor=campaign_user)
    assert set(Mailing.objects.filter(kind="journey").values_list("status", flat=True)) == {
        "paused"
    }
    with time_machine.travel(later(days=3), tick=False):
        tick_and_send()
        assert subjects_to("nina@example.org") == ["Welcome to the campaign"]
        assert Enrolment.objects.get().step.position == 2
        services.journey_resume(journey=live_welcome, actor=campaign_user)
        tick_and_send()
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign", "What R2P is"]


def test_queued_email_waits_out_a_pause(live_welcome, newcomer, interest, campaign_user):
    """An email queued just before the pause is sent after resuming, not during the pause."""
    from mailings import sending
    from mailings.journeys import engine

    sign_up(newcomer, interest)
    engine.journeys_tick()  # queued, not yet sent
    services.journey_pause(journey=live_welcome, actor=campaign_user)
    mailing = Mailing.objects.get(subject="Welcome to the campaign")
    assert sending.mailing_send_batches(mailing_id=mailing.pk) == "stopped"
    assert subjects_to("nina@example.org") == []
    services.journey_resume(journey=live_welcome, actor=campaign_user)
    tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]


def test_people_already_in_keep_their_version_when_staff_publish_changes(
    live_welcome, newcomer, supporter, interest, later, campaign_user
):
    """Nina carries on along the steps she entered; Alice, entering after, follows the new ones."""
    sign_up(newcomer, interest)
    tick_and_send()
    draft = services.journey_version_new(journey=live_welcome, actor=campaign_user)
    assert draft == 2
    step = JourneyStep.objects.get(journey=live_welcome, version=2, position=2)
    step.wait_days = 1
    step.save()
    services.journey_version_publish(journey=live_welcome, actor=campaign_user)
    live_welcome.refresh_from_db()
    assert live_welcome.version == 2

    alice = supporter
    sign_up(alice, interest)  # already subscribed: a new sign-up confirmation all the same
    from crm.models import ConsentRecord
    from crm.services import consent_grant
    from tests import factories

    olga = factories.SupporterFactory(email="olga@example.org")
    consent_grant(supporter=olga, interest=interest, method=ConsentRecord.Method.SIGNUP_FORM)
    tick_and_send()
    with time_machine.travel(later(days=1, seconds=60), tick=False):
        tick_and_send()
        tick_and_send()
    assert subjects_to("olga@example.org") == ["Welcome to the campaign", "What R2P is"]
    assert subjects_to("nina@example.org") == ["Welcome to the campaign"]
    assert Enrolment.objects.get(supporter=newcomer).step.version == 1


def test_staff_move_people_to_the_new_version_without_a_second_copy(
    live_welcome, newcomer, interest, later, campaign_user
):
    """Moving Nina onto the new version's steps never sends her an email she already had."""
    sign_up(newcomer, interest)
    tick_and_send()
    services.journey_version_new(journey=live_welcome, actor=campaign_user)
    JourneyStep.objects.filter(journey=live_welcome, version=2, position=2).update(wait_days=1)
    services.journey_version_publish(journey=live_welcome, actor=campaign_user)
    moved = services.enrolments_move_to_live_version(journey=live_welcome, actor=campaign_user)
    assert moved == 1
    tick_and_send()  # the wait starts afresh when the tick picks them up
    with time_machine.travel(later(days=1, seconds=60), tick=False):
        tick_and_send()
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign", "What R2P is"]
    # Moved back to the first email: the ledger refuses a second copy.
    first = JourneyStep.objects.get(journey=live_welcome, version=2, position=1)
    at = Enrolment.objects.get().step
    services.enrolments_move(journey=live_welcome, from_step=at, to_step=first, actor=None)
    with time_machine.travel(later(days=1, seconds=120), tick=False):
        tick_and_send()
    assert subjects_to("nina@example.org") == ["Welcome to the campaign", "What R2P is"]
    assert Delivery.objects.filter(supporter=newcomer).count() == 2


def test_a_journey_refuses_to_start_with_an_unwritten_email(interest, campaign_user):
    """Staff are told what to fix before a journey may go live."""
    journey = Journey.objects.create(name="Half done")
    journey.interests.set([interest])
    step = JourneyStep.objects.create(journey=journey, position=1, kind="email")
    services.journey_email_create(step=step)
    JourneyStep.objects.create(journey=journey, position=2, kind="wait")
    with pytest.raises(services.JourneyRefused, match=r"step 1: write the email.*step 2: say how"):
        services.journey_start(journey=journey, actor=campaign_user)


def test_ending_a_journey_takes_everyone_out(live_welcome, newcomer, interest, campaign_user):
    """Ending is for good: everyone in it leaves, queued emails are cancelled."""
    from mailings.journeys import engine

    sign_up(newcomer, interest)
    engine.journeys_tick()
    services.journey_end(journey=live_welcome, actor=campaign_user)
    assert Enrolment.objects.get().left_reason == Enrolment.Reason.ENDED
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED
    tick_and_send()
    assert subjects_to("nina@example.org") == []


def test_a_new_draft_step_can_be_an_email(live_welcome, campaign_user):
    """A step added to a draft version gets its own journey email."""
    services.journey_version_new(journey=live_welcome, actor=campaign_user)
    step = JourneyStep.objects.create(journey=live_welcome, version=2, position=6, kind="email")
    mailing = services.journey_email_create(step=step)
    assert mailing.kind == Mailing.Kind.JOURNEY
    assert mailing.status == Mailing.Status.SENDING
    assert list(mailing.interests.all()) == list(live_welcome.interests.all())


__all__ = ["email", "wait"]


def test_nobody_is_moved_onto_unpublished_steps(live_welcome, campaign_user):
    services.journey_version_new(journey=live_welcome, actor=campaign_user)
    draft = JourneyStep.objects.get(journey=live_welcome, version=2, position=1)
    live = JourneyStep.objects.get(journey=live_welcome, version=1, position=2)
    with pytest.raises(services.JourneyRefused, match="Publish the changed steps"):
        services.enrolments_move(
            journey=live_welcome, from_step=live, to_step=draft, actor=campaign_user
        )


def test_an_email_the_guard_paused_stays_paused_when_its_journey_is_saved(
    live_welcome, campaign_user
):
    """Only staff, on the email's own page, resume what the deliverability guard stopped."""
    first, second = Mailing.objects.filter(kind="journey").order_by("pk")[:2]
    Mailing.objects.filter(pk=first.pk).update(
        status=Mailing.Status.PAUSED, guard_tripped="bounces", last_error="Too many bounces."
    )

    services.journey_pause(journey=live_welcome, actor=campaign_user)
    services.journey_resume(journey=live_welcome, actor=campaign_user)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.last_error) == (Mailing.Status.PAUSED, "Too many bounces.")
    assert second.status == Mailing.Status.SENDING
