"""Writes for journeys that staff make: emails, going live, pausing, versions, moving people.

Moving supporters along is mailings.journeys.engine.
"""

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from mailings import sending
from mailings.exceptions import MailingRefused
from mailings.journeys.models import Enrolment, Journey, JourneyStep
from mailings.models import Mailing


class JourneyRefused(MailingRefused):
    """A journey cannot do what staff asked; the message says what to fix."""


# Each journey status, and the status of its emails' mailings while it holds:
# live → sending (deliveries queued by the journey go out), otherwise held.
MAILING_STATUS = {
    Journey.Status.DRAFT: Mailing.Status.DRAFT,
    Journey.Status.LIVE: Mailing.Status.SENDING,
    Journey.Status.PAUSED: Mailing.Status.PAUSED,
    Journey.Status.ENDED: Mailing.Status.CANCELLED,
}


def journey_email_create(*, step: JourneyStep, actor=None) -> Mailing:
    """Give an email step its own journey mailing (once), named after the journey and step."""
    if step.mailing_id:
        return step.mailing
    journey = step.journey
    with transaction.atomic():
        mailing = Mailing.objects.create(
            name=f"{journey.name}: email at step {step.position}"[:200],
            kind=Mailing.Kind.JOURNEY,
            status=MAILING_STATUS[journey.status],
            # Resolved by the journey, supporter by supporter: never by the
            # start task, which the sweeper calls for a count left empty.
            recipient_count=0,
            created_by=actor,
        )
        mailing.interests.set(journey.interests.all())
        JourneyStep.objects.filter(pk=step.pk).update(mailing=mailing)
        step.mailing = mailing
    return mailing


def journey_sync_emails(*, journey: Journey) -> None:
    """Give the journey's emails its topics and the status that matches the journey's."""
    mailings = Mailing.objects.filter(journey_steps__journey=journey).distinct()
    interests = list(journey.interests.all())
    for mailing in mailings:
        mailing.interests.set(interests)
    status = MAILING_STATUS[journey.status]
    changes = {"status": status}
    if status == Mailing.Status.SENDING:
        changes.update(last_error="")
    changing = Mailing.objects.filter(pk__in=mailings.values("pk")).exclude(status=status)
    if status == Mailing.Status.SENDING:
        # An email the deliverability guard paused waits for staff to resume or
        # cancel it on its own page; saving or resuming its journey is no answer.
        changing = changing.exclude(Q(status=Mailing.Status.PAUSED) & ~Q(guard_tripped=""))
    changing.update(**changes)
    Mailing.objects.filter(pk__in=mailings.values("pk"), started_at__isnull=True).filter(
        status=Mailing.Status.SENDING
    ).update(started_at=timezone.now())


def journey_problems(*, journey: Journey, version=None) -> list[str]:
    """Return what must be fixed before the journey (or its `version`) may run."""
    problems = []
    steps = list(journey.steps_of(version or journey.version).select_related("mailing"))
    if not journey.interests.exists():
        problems.append("choose the interests the journey is about")
    trigger = Journey.Trigger
    needs = {
        trigger.INTEREST: ("trigger_interest", "choose the interest that starts it"),
        trigger.PARTNER: ("trigger_partner", "choose the partner whose imports start it"),
        trigger.SEGMENT: ("trigger_segment", "choose the segment that starts it"),
        trigger.ANNIVERSARY: ("trigger_days", "say how many days after joining it starts"),
    }
    if journey.trigger in needs and not getattr(journey, needs[journey.trigger][0]):
        problems.append(needs[journey.trigger][1])
    if journey.entry == Journey.Entry.AGAIN and not journey.reentry_days:
        problems.append("say after how many days someone may enter again")
    if not steps:
        problems.append("add at least one step")
    positions = {step.position for step in steps}
    for step in steps:
        problems += [f"step {step.position}: {problem}" for problem in _step_problems(step)]
        is_branch = step.kind == JourneyStep.Kind.BRANCH and step.branch_to is not None
        if is_branch and (step.branch_to <= step.position or step.branch_to not in positions):
            problems.append(f"step {step.position}: a branch goes to a later step of this journey")
    return problems


def _step_problems(step):
    kind = JourneyStep.Kind
    if step.kind == kind.EMAIL:
        mailing = step.mailing
        if mailing is None or not mailing.subject.strip():
            return ["write the email (it has no subject)"]
        if not (getattr(mailing, "blocks", None) or mailing.body_html.strip()):
            return ["write the email (it is empty)"]
    if step.kind == kind.WAIT and not (
        step.wait_days or step.wait_weekday is not None or step.wait_hour is not None
    ):
        return ["say how long to wait"]
    if step.kind == kind.WAIT and step.wait_hour is not None and step.wait_hour > 23:
        return ["an hour is 0 to 23"]
    if step.kind == kind.BRANCH:
        condition = JourneyStep.Condition
        if not step.condition or step.branch_to is None:
            return ["choose what to branch on and the step to go to"]
        if step.condition == condition.CLICKED_LINK and not step.link_url:
            return ["give the link"]
        if step.condition == condition.HOLDS_INTEREST and not step.interest_id:
            return ["choose the interest"]
    needs = {
        kind.TAG_ADD: "tag_id",
        kind.TAG_REMOVE: "tag_id",
        kind.INTEREST_ADD: "interest_id",
        kind.INTEREST_REMOVE: "interest_id",
        kind.SEGMENT_ADD: "segment_id",
        kind.SEGMENT_REMOVE: "segment_id",
    }
    if step.kind in needs and not getattr(step, needs[step.kind]):
        return [f"choose what to {step.get_kind_display().lower()}"]
    return []


def _refuse_if_problems(journey, version=None):
    problems = journey_problems(journey=journey, version=version)
    if problems:
        raise JourneyRefused("Before it can run, " + "; ".join(problems) + ".")


def _transition(journey, *, allowed, to, **fields):
    changed = Journey.objects.filter(pk=journey.pk, status__in=allowed).update(
        status=to, updated_at=timezone.now(), **fields
    )
    journey.refresh_from_db()
    if not changed:
        raise JourneyRefused(
            f"“{journey}” is {journey.get_status_display().lower()}, so it cannot be "
            f"{Journey.Status(to).label.lower()} now."
        )
    journey_sync_emails(journey=journey)
    return journey


def journey_start(*, journey: Journey, actor) -> Journey:
    """Make a draft journey live: from now on, whoever its trigger finds enters."""
    _refuse_if_problems(journey)
    now = timezone.now()
    with transaction.atomic():
        return _transition(
            journey,
            allowed=[Journey.Status.DRAFT],
            to=Journey.Status.LIVE,
            live_since=now,
            scanned_until=None,
            exits_checked_until=now,
        )


def journey_pause(*, journey: Journey, actor) -> Journey:
    """Hold everyone where they are: nobody enters or moves and no journey email goes out."""
    with transaction.atomic():
        return _transition(journey, allowed=[Journey.Status.LIVE], to=Journey.Status.PAUSED)


def journey_resume(*, journey: Journey, actor) -> Journey:
    """Carry on: those whose wait ended meanwhile move on at the next tick.

    Triggers are looked at from where they were left, so whoever joined
    during the pause enters now.
    """
    with transaction.atomic():
        journey = _transition(journey, allowed=[Journey.Status.PAUSED], to=Journey.Status.LIVE)
        for mailing in Mailing.objects.filter(
            journey_steps__journey=journey, status=Mailing.Status.SENDING
        ).distinct():
            sending.mailing_enqueue_senders(mailing=mailing)
    return journey


def journey_end(*, journey: Journey, actor) -> Journey:
    """End the journey for good: everyone in it leaves and queued emails are cancelled."""
    from mailings.models import Delivery

    now = timezone.now()
    with transaction.atomic():
        journey = _transition(
            journey,
            allowed=[Journey.Status.DRAFT, Journey.Status.LIVE, Journey.Status.PAUSED],
            to=Journey.Status.ENDED,
        )
        Enrolment.objects.active().filter(journey=journey).update(
            state=Enrolment.State.LEFT,
            left_reason=Enrolment.Reason.ENDED,
            due_at=None,
            finished_at=now,
        )
        Delivery.objects.filter(
            mailing__journey_steps__journey=journey, status=Delivery.Status.QUEUED
        ).update(status=Delivery.Status.CANCELLED, error="The journey was ended.")
    return journey


def journey_version_new(*, journey: Journey, actor=None) -> int:
    """Copy the live steps into a new draft version for staff to edit; return its number.

    Email steps keep their mailing, so someone moved across versions is not
    sent an email they already had. Return the existing draft if there is one.
    """
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        latest = journey.steps.aggregate(Max("version"))["version__max"] or journey.version
        if latest > journey.version:
            return latest
        draft = journey.version + 1
        JourneyStep.objects.bulk_create(
            [
                JourneyStep(
                    **{
                        field.attname: getattr(step, field.attname)
                        for field in JourneyStep._meta.concrete_fields
                        if field.attname not in ("id", "version")
                    },
                    version=draft,
                )
                for step in journey.steps_of(journey.version)
            ]
        )
    return draft


def journey_version_publish(*, journey: Journey, actor=None) -> Journey:
    """Make the draft version the one new entrants follow; those already in carry on."""
    draft = journey.draft_version
    if draft == journey.version:
        raise JourneyRefused("There are no changes to publish.")
    _refuse_if_problems(journey, version=draft)
    with transaction.atomic():
        Journey.objects.filter(pk=journey.pk).update(version=draft, updated_at=timezone.now())
        journey.refresh_from_db()
        journey_sync_emails(journey=journey)
    return journey


def journey_version_discard(*, journey: Journey, actor=None) -> int:
    """Throw away the unpublished draft version; return how many steps went."""
    deleted, _ = JourneyStep.objects.filter(journey=journey, version__gt=journey.version).delete()
    return deleted


def enrolments_move(
    *, journey: Journey, from_step: JourneyStep, to_step: JourneyStep, actor
) -> int:
    """Move everyone now at `from_step` to the start of `to_step`; return how many moved.

    They carry on from `to_step` at the next tick (a wait starts afresh).
    An email they were already sent on this entry is not sent again.
    """
    if from_step.journey_id != journey.pk or to_step.journey_id != journey.pk:
        raise JourneyRefused("Both steps must belong to this journey.")
    if from_step.pk == to_step.pk:
        raise JourneyRefused("Choose a different step to move them to.")
    if to_step.version > journey.version:
        raise JourneyRefused("Publish the changed steps before moving anyone onto them.")
    now = timezone.now()
    return (
        Enrolment.objects.active()
        .filter(journey=journey, step=from_step)
        .update(step=to_step, at_start=True, due_at=now, step_entered_at=now)
    )


def enrolments_move_to_live_version(*, journey: Journey, actor) -> int:
    """Move everyone on an older version to the same-numbered step of the live version."""
    moved = 0
    live = {step.position: step for step in journey.steps_of(journey.version)}
    older = JourneyStep.objects.filter(journey=journey, version__lt=journey.version)
    for step in older:
        target = live.get(step.position)
        if target is None and live:
            target = live[max(live)]
        if target is not None:
            moved += enrolments_move(journey=journey, from_step=step, to_step=target, actor=actor)
    return moved


def journeys_forget(*, supporter) -> None:
    """Take an erased supporter out of every journey (run inside the erasure's transaction)."""
    Enrolment.objects.active().filter(supporter=supporter).update(
        state=Enrolment.State.LEFT,
        left_reason=Enrolment.Reason.ERASED,
        due_at=None,
        finished_at=timezone.now(),
    )


def journeys_data_export(*, supporter) -> dict:
    """Return the journeys `supporter` entered, for their data export."""
    return {
        "journeys": [
            {
                "journey": enrolment.journey.name,
                "entered_at": enrolment.entered_at.isoformat(),
                "state": enrolment.state,
                "left_reason": enrolment.left_reason,
                "finished_at": enrolment.finished_at.isoformat() if enrolment.finished_at else None,
            }
            for enrolment in supporter.journey_enrolments.select_related("journey").order_by(
                "entered_at"
            )
        ]
    }
