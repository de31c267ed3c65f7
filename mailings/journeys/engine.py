"""
Moving supporters through journeys, from database state, in batches.

Celery beat runs `journeys_tick` every RALLY_JOURNEY_TICK_SECONDS. For each
live journey it:

1. enrols whoever the trigger found since the last look (`journey_enrol`):
   facts in the database (a consent record, a segment's members, a joining
   date), never an event that a crash could lose; the unique key
   (journey, supporter, round) makes a repeat add nobody;
2. takes out whoever stopped being mailable since the last look
   (`journey_exits`);
3. claims due enrolments in batches (`enrolments_claim`: `due_at` pushed a
   lease ahead by one conditional UPDATE) and moves each along its steps
   until it must wait (`enrolments_advance`), in one transaction per batch.

An email step inserts the supporter's Delivery (mailing, supporter, round)
into the sending ledger and starts the mailing's senders: from there the
claims, ESP calls, retries, tracking and the sweeper of newsletters apply
unchanged, so a step's email goes once. The next email step waits until the
previous email's delivery is finished, so emails arrive in order.

Two ticks at once claim different rows; a tick that dies mid-batch rolls
back, and its rows are due again when their lease runs out. Anything done
twice is harmless: deliveries and visits are unique, tags and segments
membership are sets, and consent services leave a subscriber as they are.
"""

import logging
import time
import zoneinfo
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import time as clock

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from crm import services as crm_services
from crm.models import ConsentRecord, Segment, Subscription, Supporter, Suppression
from mailings import sending, sql
from mailings.journeys.models import Enrolment, Journey, JourneyStep
from mailings.models import Delivery, DeliveryEvent, Mailing

logger = logging.getLogger(__name__)

# Transactions that commit late carry timestamps from before the last look:
# each look goes back this far again (the unique key ignores a repeat).
OVERLAP = timedelta(minutes=5)
# A branch may only jump forwards, so this bounds a batch's walk however the
# steps are laid out.
MAX_HOPS = 100
# Country -> time zone for waits "until Tuesday at 10:00"; other countries
# use RALLY_JOURNEY_TIME_ZONE (UK time by default).
COUNTRY_ZONES = {
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "FR": "Europe/Paris",
    "DE": "Europe/Berlin",
    "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels",
    "ES": "Europe/Madrid",
    "IT": "Europe/Rome",
    "SE": "Europe/Stockholm",
    "NO": "Europe/Oslo",
    "DK": "Europe/Copenhagen",
    "CH": "Europe/Zurich",
    "RW": "Africa/Kigali",
    "SD": "Africa/Khartoum",
    "KE": "Africa/Nairobi",
    "ZA": "Africa/Johannesburg",
    "NG": "Africa/Lagos",
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "IN": "Asia/Kolkata",
}
LEAVING_STATUSES = {
    Supporter.Status.UNSUBSCRIBED: Enrolment.Reason.UNSUBSCRIBED,
    Supporter.Status.BOUNCED: Enrolment.Reason.BOUNCED,
    Supporter.Status.COMPLAINED: Enrolment.Reason.COMPLAINED,
    Supporter.Status.ERASED: Enrolment.Reason.ERASED,
}


def day_seconds() -> float:
    """Return how long a journey's "day" is (shortened in tests and demos)."""
    return settings.RALLY_JOURNEY_DAY_SECONDS


def journeys_tick(*, budget: float | None = None, now=None) -> dict:
    """Enrol, take out and move along the supporters of every live journey; return counts.

    Safe to run at any time, any number of times at once, and after a crash.
    """
    budget = settings.RALLY_JOURNEY_TICK_BUDGET_SECONDS if budget is None else budget
    deadline = time.monotonic() + budget
    # Only rows due when the tick began: someone held back during it (their
    # previous email not sent yet) waits for a later tick.
    due_by = now or timezone.now()
    done = {"entered": 0, "left": 0, "moved": 0}
    live = list(Journey.objects.live())
    for journey in live:
        done["entered"] += journey_enrol(journey=journey, now=due_by)
        done["left"] += journey_exits(journey=journey, now=due_by)
    while live:
        busy = []
        for journey in live:
            moved = journey_advance_batch(journey=journey, now=now, due_by=due_by)
            done["moved"] += moved
            if moved:
                busy.append(journey)
        live = busy
        if time.monotonic() > deadline or now is not None:
            break  # beat starts the next tick; a fixed `now` (tests) means one batch each
    return done


def journey_audience(journey):
    """Return the supporters who may be sent this journey's emails: a newsletter's rule."""
    interests = list(journey.interests.all())
    if not interests:
        return Supporter.objects.none()
    return Supporter.objects.mailable().interested_in(*interests)


# -- 1. entering ---------------------------------------------------------------------------


def _triggered(journey, since, now):
    """Return the ids (a values() query) of supporters the trigger found in (since, now]."""
    trigger = Journey.Trigger
    granted = ConsentRecord.objects.filter(
        action=ConsentRecord.Action.GRANTED, created_at__gt=since, created_at__lte=now
    )
    if journey.trigger == trigger.SIGNUP:
        return granted.filter(method=ConsentRecord.Method.SIGNUP_FORM).values("supporter_id")
    if journey.trigger == trigger.INTEREST:
        return granted.filter(interest_id=journey.trigger_interest_id).values("supporter_id")
    if journey.trigger == trigger.PARTNER:
        return granted.filter(
            method=ConsentRecord.Method.PARTNER_IMPORT, partner_id=journey.trigger_partner_id
        ).values("supporter_id")
    if journey.trigger == trigger.SEGMENT:
        # Everyone in the segment when the journey goes live, then whoever joins:
        # a rules segment records no joining time, so members are compared.
        segment = Segment.objects.filter(pk=journey.trigger_segment_id).first()
        if segment is None:
            return Supporter.objects.none().values("pk")
        return segment.supporters().order_by().values("pk")
    if journey.trigger == trigger.ANNIVERSARY and journey.trigger_days:
        age = timedelta(seconds=journey.trigger_days * day_seconds())
        return Supporter.objects.filter(
            created_at__gt=since - age, created_at__lte=now - age
        ).values("pk")
    return Supporter.objects.none().values("pk")


def journey_enrol(*, journey: Journey, now=None) -> int:
    """Enrol the supporters the journey's trigger found since the last look; return how many."""
    now = now or timezone.now()
    if journey.status != Journey.Status.LIVE or journey.live_since is None:
        return 0
    first = journey.steps_of(journey.version).first()
    if first is None:
        return 0
    since = max(journey.scanned_until or journey.live_since, journey.live_since)
    if journey.scanned_until is not None:
        since -= OVERLAP
    candidates = _triggered(journey, since, now)
    entries = Enrolment.objects.filter(journey=journey, supporter=OuterRef("pk"))
    eligible = journey_audience(journey).filter(pk__in=candidates)
    if journey.entry == Journey.Entry.AGAIN and journey.reentry_days:
        recent = now - timedelta(seconds=journey.reentry_days * day_seconds())
        eligible = eligible.exclude(
            Exists(entries.filter(Q(state=Enrolment.State.ACTIVE) | Q(entered_at__gt=recent)))
        )
    else:
        eligible = eligible.exclude(Exists(entries))
    rows = list(
        eligible.annotate(
            last=Max("journey_enrolments__round", filter=Q(journey_enrolments__journey=journey))
        ).values_list("pk", "last")
    )
    made = Enrolment.objects.bulk_create(
        (
            Enrolment(
                journey=journey,
                supporter_id=pk,
                round=(last or 0) + 1,
                step=first,
                due_at=now,
                entered_at=now,
                step_entered_at=now,
            )
            for pk, last in rows
        ),
        batch_size=5000,
        ignore_conflicts=True,
    )
    Journey.objects.filter(pk=journey.pk).update(scanned_until=now)
    journey.scanned_until = now
    if made:
        logger.info("Journey %s: %s supporters entered", journey.pk, len(made))
    return len(rows)


# -- 2. leaving ----------------------------------------------------------------------------


def leaving_reasons(journey, supporter_ids) -> dict:
    """Return {supporter id: Enrolment.Reason} for those of `supporter_ids` who must leave."""
    interests = list(journey.interests.all())
    rows = (
        Supporter.objects.filter(pk__in=supporter_ids)
        .with_suppressed()
        .annotate(
            topic=Exists(
                Subscription.objects.filter(
                    supporter=OuterRef("pk"),
                    interest__in=interests,
                    status=Subscription.Status.SUBSCRIBED,
                )
            )
        )
        .values_list("pk", "status", "suppressed", "topic")
    )
    reasons = {}
    for pk, status, suppressed, topic in rows:
        if status in LEAVING_STATUSES:
            reasons[pk] = LEAVING_STATUSES[status]
        elif suppressed:
            reasons[pk] = Enrolment.Reason.SUPPRESSED
        elif not topic:
            reasons[pk] = Enrolment.Reason.TOPIC
    found = {pk for pk, *_ in rows}
    for pk in set(supporter_ids) - found:
        reasons[pk] = Enrolment.Reason.ERASED  # deleted outright
    return reasons


def enrolments_leave(*, enrolments, reason, now=None) -> int:
    """Take `enrolments` (active ones) out of their journey for `reason`; return how many."""
    now = now or timezone.now()
    return enrolments.filter(state=Enrolment.State.ACTIVE).update(
        state=Enrolment.State.LEFT, left_reason=reason, due_at=None, finished_at=now
    )


def journey_exits(*, journey: Journey, now=None) -> int:
    """Take out whoever stopped being mailable since the last look; return how many left.

    Looks only at supporters who withdrew consent (unsubscribed from all email or
    from a topic, read from the consent records' (action, created_at) index) or
    whose address was suppressed (bounces and complaints suppress it) since
    then. Whatever else makes someone unmailable is caught when they are next
    due, and the sending engine checks once more before each email, so nobody
    who left can be sent a journey email even between looks.
    """
    now = now or timezone.now()
    since = (journey.exits_checked_until or journey.live_since or now) - OVERLAP
    withdrawn = ConsentRecord.objects.filter(
        action=ConsentRecord.Action.WITHDRAWN, created_at__gt=since
    ).values("supporter_id")
    suppressed = Suppression.objects.filter(created_at__gt=since).values("email_hash")
    changed = Q(pk__in=withdrawn) | Q(email_hash__in=suppressed)
    enrolled = Enrolment.objects.active().filter(journey=journey)
    ids = list(
        Supporter.objects.filter(changed)
        .filter(pk__in=enrolled.values("supporter_id"))
        .values_list("pk", flat=True)
    )
    left = 0
    by_reason = defaultdict(list)
    for pk, reason in leaving_reasons(journey, ids).items():
        by_reason[reason].append(pk)
    for reason, pks in by_reason.items():
        left += enrolments_leave(
            enrolments=enrolled.filter(supporter_id__in=pks), reason=reason, now=now
        )
    Journey.objects.filter(pk=journey.pk).update(exits_checked_until=now)
    journey.exits_checked_until = now
    return left


# -- 3. moving along -----------------------------------------------------------------------


class _Row:
    """One claimed enrolment as the batch changes it."""

    __slots__ = (
        "at_start",
        "due_at",
        "finished_at",
        "id",
        "last_mailing_id",
        "left_reason",
        "round",
        "state",
        "step",
        "step_entered_at",
        "supporter_id",
    )

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values.get(name))

    def key(self):
        return (
            self.step.pk if self.step else None,
            self.at_start,
            self.last_mailing_id,
            self.state,
            self.left_reason or "",
            self.due_at,
            self.step_entered_at,
            self.finished_at,
        )


class _Plan:
    """A journey's steps by version, as the batch walks them."""

    def __init__(self, journey):
        self.by_id = {}
        self.by_version = defaultdict(list)
        for step in JourneyStep.objects.filter(journey=journey).select_related("mailing"):
            self.by_id[step.pk] = step
            self.by_version[step.version].append(step)
        for steps in self.by_version.values():
            steps.sort(key=lambda step: step.position)

    def after(self, step):
        for later in self.by_version[step.version]:
            if later.position > step.position:
                return later
        return None

    def at(self, step, position):
        """Return the step at `position` of `step`'s version (forwards only), else the next."""
        for later in self.by_version[step.version]:
            if later.position == position and later.position > step.position:
                return later
        return self.after(step)


def enrolments_claim(
    *, journey_id: int, limit: int, now=None, due_by=None
) -> tuple[list[int], datetime]:
    """Lease up to `limit` enrolments of a journey due by `due_by` (now); return ids, lease end."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.RALLY_JOURNEY_LEASE_SECONDS)
    ids = sql.enrolments_claim(
        journey_id=journey_id, limit=limit, now=min(due_by or now, now), until=until
    )
    return ids, until


def journey_advance_batch(*, journey: Journey, now=None, due_by=None) -> int:
    """Claim one batch of due enrolments of `journey` and move them along; return how many."""
    if not Journey.objects.filter(pk=journey.pk, status=Journey.Status.LIVE).exists():
        return 0
    ids, until = enrolments_claim(
        journey_id=journey.pk, limit=settings.RALLY_JOURNEY_BATCH_SIZE, now=now, due_by=due_by
    )
    if not ids:
        return 0
    return enrolments_advance(journey=journey, ids=ids, claimed_until=until, now=now)


def enrolments_advance(*, journey: Journey, ids: list[int], claimed_until, now=None) -> int:
    """Move the claimed enrolments `ids` along their steps until each must wait.

    Return how many moved, left or started a wait (the rest were held back).

    One transaction: the steps' effects (deliveries queued, tags, interests,
    segments) and the enrolments' new places commit together. Rows whose
    claim was lost (the lease ran out and another worker took them) are left
    to that worker.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = [
            _Row(step=values.pop("step_id"), **values)
            for values in Enrolment.objects.filter(
                pk__in=ids, due_at=claimed_until, state=Enrolment.State.ACTIVE
            ).values(
                "id",
                "supporter_id",
                "round",
                "step_id",
                "at_start",
                "last_mailing_id",
                "state",
                "left_reason",
                "due_at",
                "step_entered_at",
                "finished_at",
            )
        ]
        if not rows:
            return 0
        walk = _Walk(journey, now)
        for row in rows:
            row.step = walk.plan.by_id.get(row.step)
        walk.run(rows)
        _save(rows, claimed_until)
    # Rows only held back (their previous email not sent yet) are no progress:
    # a tick stops claiming a journey whose batches make none.
    return len(rows) - len(walk.held)


class _Walk:
    """One batch's walk through the steps, grouped by step so each costs a few queries."""

    def __init__(self, journey, now):
        self.journey = journey
        self.now = now
        self.plan = _Plan(journey)
        self.visits = []
        self.to_send = set()
        self.held = set()

    def run(self, rows):
        reasons = leaving_reasons(self.journey, [row.supporter_id for row in rows])
        pending = []
        for row in rows:
            if row.supporter_id in reasons:
                self.leave(row, reasons[row.supporter_id])
            elif row.step is None:
                self.finish(row)
            else:
                pending.append(row)
        for _ in range(MAX_HOPS):
            if not pending:
                break
            groups = defaultdict(list)
            for row in pending:
                groups[row.step.pk].append(row)
            pending = []
            for group in groups.values():
                pending += self.act(group[0].step, group)
        for row in pending:  # a walk too long for one batch goes on next time
            row.due_at = self.now
        sql.visits_insert(pairs=self.visits, now=self.now)
        self.send()

    # Moving ----------------------------------------------------------------

    def move(self, row, step):
        """Put `row` at the start of `step` (None: the journey is over for them)."""
        if step is None:
            self.finish(row)
            return []
        row.step, row.at_start, row.step_entered_at = step, True, self.now
        self.held.discard(row.id)
        return [row]

    def finish(self, row):
        row.state, row.due_at, row.finished_at = Enrolment.State.DONE, None, self.now

    def leave(self, row, reason):
        row.state, row.left_reason = Enrolment.State.LEFT, reason
        row.due_at, row.finished_at = None, self.now

    def hold(self, row, until):
        row.due_at = until
        self.held.add(row.id)

    # Steps -----------------------------------------------------------------

    def act(self, step, rows):
        """Do `step` for `rows`; return the rows that moved on to a step to do now."""
        for row in rows:
            if row.at_start:
                self.visits.append((row.id, step.pk))
        kind = JourneyStep.Kind
        handler = {
            kind.EMAIL: self.email,
            kind.WAIT: self.wait,
            kind.BRANCH: self.branch,
            kind.END: self.end,
        }.get(step.kind, self.change)
        return handler(step, rows)

    def end(self, step, rows):
        for row in rows:
            self.finish(row)
        return []

    def unsent(self, rows):
        """Hold those of `rows` whose previous email is not sent yet; return the others."""
        previous = [row for row in rows if row.last_mailing_id]
        if not previous:
            return rows
        unfinished = set(
            Delivery.objects.filter(
                supporter_id__in=[row.supporter_id for row in previous],
                mailing_id__in={row.last_mailing_id for row in previous},
            )
            .unfinished()
            .values_list("mailing_id", "supporter_id", "round")
        )
        poll = self.now + timedelta(seconds=settings.RALLY_JOURNEY_POLL_SECONDS)
        ready = []
        for row in rows:
            if (row.last_mailing_id, row.supporter_id, row.round) in unfinished:
                self.hold(row, poll)
            else:
                ready.append(row)
        return ready

    def email(self, step, rows):
        # Emails go in order: the next waits until the previous one's delivery is finished.
        rows = self.unsent(rows)
        if step.mailing_id is not None and rows:
            # Into the sending ledger: the unique (mailing, supporter, round)
            # makes a repeat of this batch add nothing.
            sql.deliveries_insert_rounds(
                mailing_id=step.mailing_id,
                pairs=[(row.supporter_id, row.round) for row in rows],
                now=self.now,
            )
            self.to_send.add(step.mailing_id)
        moved = []
        for row in rows:
            row.last_mailing_id = step.mailing_id or row.last_mailing_id
            moved += self.move(row, self.plan.after(step))
        return moved

    def send(self):
        """Start the senders of the mailings the batch queued deliveries for."""
        for mailing in Mailing.objects.filter(pk__in=self.to_send, status=Mailing.Status.SENDING):
            sending.mailing_enqueue_senders(mailing=mailing)

    def wait(self, step, rows):
        moved = []
        zones = self.zones(rows) if _keeps_clock(step) else {}
        for row in rows:
            if not row.at_start:  # the wait is over
                moved += self.move(row, self.plan.after(step))
                continue
            until = wait_until(step, self.now, zones.get(row.supporter_id))
            row.at_start = False
            if until <= self.now:
                moved += self.move(row, self.plan.after(step))
            else:
                row.due_at = until
        return moved

    def zones(self, rows):
        countries = Supporter.objects.filter(pk__in=[row.supporter_id for row in rows]).values_list(
            "pk", "country"
        )
        return {pk: supporter_zone(str(country or "")) for pk, country in countries}

    def branch(self, step, rows):
        if step.condition != JourneyStep.Condition.HOLDS_INTEREST:
            rows = self.unsent(rows)  # what they did with an email not yet sent is nothing
        yes = self.answered_yes(step, rows)
        moved = []
        for row in rows:
            target = self.plan.at(step, step.branch_to) if row.id in yes else self.plan.after(step)
            moved += self.move(row, target)
        return moved

    def answered_yes(self, step, rows) -> set:
        """Return the ids of `rows` for whom the branch's condition holds."""
        condition = JourneyStep.Condition
        if step.condition == condition.HOLDS_INTEREST:
            holding = set(
                Subscription.objects.filter(
                    supporter_id__in=[row.supporter_id for row in rows],
                    interest_id=step.interest_id,
                    status=Subscription.Status.SUBSCRIBED,
                ).values_list("supporter_id", flat=True)
            )
            return {row.id for row in rows if row.supporter_id in holding}
        keyed = {(row.last_mailing_id, row.supporter_id, row.round): row.id for row in rows}
        deliveries = Delivery.objects.filter(
            supporter_id__in=[row.supporter_id for row in rows],
            mailing_id__in={row.last_mailing_id for row in rows if row.last_mailing_id},
        )
        if step.condition == condition.OPENED:
            # A click is an open too: images may be blocked.
            deliveries = deliveries.filter(Q(opened_at__isnull=False) | Q(clicked_at__isnull=False))
        elif step.condition == condition.CLICKED:
            deliveries = deliveries.filter(clicked_at__isnull=False)
        elif step.condition == condition.CLICKED_LINK:
            deliveries = deliveries.filter(
                Exists(
                    DeliveryEvent.objects.filter(
                        delivery=OuterRef("pk"), event_type="clicked", url=step.link_url
                    )
                )
            )
        else:
            return set()
        found = deliveries.values_list("mailing_id", "supporter_id", "round")
        return {keyed[key] for key in found if key in keyed}

    def change(self, step, rows):
        """Add or remove a tag, an interest (with its consent record) or a static segment."""
        kind = JourneyStep.Kind
        ids = [row.supporter_id for row in rows]
        supporters = Supporter.objects.filter(pk__in=ids)
        label = f"journey “{self.journey.name}”"[:200]
        if step.kind == kind.TAG_ADD and step.tag_id:
            Supporter.tags.through.objects.bulk_create(
                (Supporter.tags.through(supporter_id=pk, tag_id=step.tag_id) for pk in ids),
                ignore_conflicts=True,
            )
        elif step.kind == kind.TAG_REMOVE and step.tag_id:
            Supporter.tags.through.objects.filter(supporter_id__in=ids, tag_id=step.tag_id).delete()
        elif step.kind == kind.INTEREST_ADD and step.interest_id:
            crm_services.supporters_subscribe(
                supporters=supporters,
                interest=step.interest,
                actor=None,
                method=ConsentRecord.Method.STAFF,
                actor_label=label,
            )
        elif step.kind == kind.INTEREST_REMOVE and step.interest_id:
            crm_services.supporters_unsubscribe(
                supporters=supporters,
                interest=step.interest,
                actor=None,
                method=ConsentRecord.Method.STAFF,
                actor_label=label,
            )
        elif step.kind == kind.SEGMENT_ADD and step.segment_id:
            crm_services.segment_add_members(segment=step.segment, supporters=supporters)
        elif step.kind == kind.SEGMENT_REMOVE and step.segment_id:
            crm_services.segment_remove_members(segment=step.segment, supporters=supporters)
        moved = []
        for row in rows:
            moved += self.move(row, self.plan.after(step))
        return moved


def _keeps_clock(step):
    return step.wait_weekday is not None or step.wait_hour is not None


def supporter_zone(country: str):
    return zoneinfo.ZoneInfo(COUNTRY_ZONES.get(country.upper(), settings.RALLY_JOURNEY_TIME_ZONE))


def wait_until(step, now, zone=None):
    """Return when a wait step that starts at `now` ends, for a supporter living in `zone`.

    "N days" first, then, if set, until the next weekday and hour (09:00
    when no hour is given) on the supporter's clock.
    """
    until = now + timedelta(seconds=(step.wait_days or 0) * day_seconds())
    if not _keeps_clock(step):
        return until
    zone = zone or zoneinfo.ZoneInfo(settings.RALLY_JOURNEY_TIME_ZONE)
    local = until.astimezone(zone)
    hour = 9 if step.wait_hour is None else step.wait_hour
    day = local.date()
    for _ in range(8):
        candidate = datetime.combine(day, clock(hour), tzinfo=zone)
        right_day = step.wait_weekday is None or day.weekday() == step.wait_weekday
        if right_day and candidate >= local:
            return candidate
        day += timedelta(days=1)
    return until  # unreachable: a week always holds the weekday


def _save(rows, claimed_until):
    """Write the batch's rows back, one UPDATE per distinct outcome, if still ours."""
    groups = defaultdict(list)
    for row in rows:
        groups[row.key()].append(row.id)
    for key, ids in groups.items():
        step_id, at_start, last_mailing_id, state, reason, due_at, entered, finished = key
        Enrolment.objects.filter(pk__in=ids, due_at=claimed_until).update(
            step_id=step_id,
            at_start=at_start,
            last_mailing_id=last_mailing_id,
            state=state,
            left_reason=reason,
            due_at=due_at,
            step_entered_at=entered,
            finished_at=finished,
        )
