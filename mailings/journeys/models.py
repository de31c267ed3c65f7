from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JourneyQuerySet(models.QuerySet):
    def live(self):
        return self.filter(status=Journey.Status.LIVE)


class Journey(models.Model):
    """A series of steps (emails, waits, branches, changes) supporters go through once triggered.

    Steps are versioned: supporters carry on along the version they entered
    (`Enrolment.step` names a step of one version) while staff prepare and
    publish the next; new entrants follow `version`.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused"
        ENDED = "ended", "Ended"

    class Trigger(models.TextChoices):
        SIGNUP = "signup", "Confirms a sign-up on the website"
        INTEREST = "interest", "Subscribes to an interest"
        PARTNER = "partner", "Is imported from a partner"
        SEGMENT = "segment", "Joins a segment"
        ANNIVERSARY = "anniversary", "A number of days after joining"

    class Entry(models.TextChoices):
        ONCE = "once", "Once per supporter, ever"
        AGAIN = "again", "Again, a number of days after they last entered"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="For staff: what the journey is for.")
    trigger = models.CharField(
        "who enters", max_length=16, choices=Trigger.choices, default=Trigger.SIGNUP
    )
    trigger_interest = models.ForeignKey(
        "crm.CampaignInterest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="interest",
        help_text="For “Subscribes to an interest”.",
    )
    trigger_partner = models.ForeignKey(
        "crm.PartnerOrganisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="partner",
        help_text="For “Is imported from a partner”.",
    )
    trigger_segment = models.ForeignKey(
        "crm.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="segment",
        help_text="For “Joins a segment”.",
    )
    trigger_days = models.PositiveIntegerField(
        "days after joining",
        null=True,
        blank=True,
        help_text="For “A number of days after joining”: 365 for one year.",
    )
    interests = models.ManyToManyField(
        "crm.CampaignInterest",
        related_name="journeys",
        help_text=(
            "The journey's topics, as a newsletter's: only supporters subscribed to one of "
            "them enter, and whoever unsubscribes from them leaves at once."
        ),
    )
    entry = models.CharField("entering", max_length=8, choices=Entry.choices, default=Entry.ONCE)
    reentry_days = models.PositiveIntegerField(
        "enter again after (days)",
        null=True,
        blank=True,
        help_text="For “Again”: how many days after entering a supporter may enter again.",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    # The version new entrants follow; steps of a higher version are a draft.
    version = models.PositiveIntegerField(default=1, editable=False)
    live_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Triggers are found from database facts newer than this (see services.journey_enrol).
    scanned_until = models.DateTimeField(null=True, blank=True, editable=False)
    exits_checked_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JourneyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def draft_version(self):
        """Return the version staff are editing: the live one, or a newer unpublished one."""
        latest = self.steps.aggregate(models.Max("version"))["version__max"]
        return max(latest or 1, self.version)

    def steps_of(self, version=None):
        return self.steps.filter(version=version or self.version).order_by("position")


class JourneyStep(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Send an email"
        WAIT = "wait", "Wait"
        BRANCH = "branch", "Branch on what they did"
        TAG_ADD = "tag_add", "Add a tag"
        TAG_REMOVE = "tag_remove", "Remove a tag"
        INTEREST_ADD = "interest_add", "Subscribe to an interest"
        INTEREST_REMOVE = "interest_remove", "Unsubscribe from an interest"
        SEGMENT_ADD = "segment_add", "Add to a static segment"
        SEGMENT_REMOVE = "segment_remove", "Remove from a static segment"
        END = "end", "End the journey"

    class Condition(models.TextChoices):
        OPENED = "opened", "Opened the previous email"
        CLICKED = "clicked", "Clicked a link in the previous email"
        CLICKED_LINK = "clicked_link", "Clicked a given link in the previous email"
        HOLDS_INTEREST = "holds_interest", "Is subscribed to an interest"

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps")
    version = models.PositiveIntegerField(default=1, editable=False)
    position = models.PositiveSmallIntegerField("step", help_text="Steps run in this order.")
    kind = models.CharField("what happens", max_length=16, choices=Kind.choices)
    # An email step owns a journey Mailing (kind "journey"); versions share it,
    # so someone moved to a new version is never sent the same email twice.
    mailing = models.ForeignKey(
        "mailings.Mailing",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="journey_steps",
        editable=False,
    )
    wait_days = models.PositiveIntegerField("days", null=True, blank=True)
    wait_weekday = models.PositiveSmallIntegerField(
        "then until", choices=Weekday.choices, null=True, blank=True
    )
    wait_hour = models.PositiveSmallIntegerField(
        "at hour",
        null=True,
        blank=True,
        help_text="0-23, in the supporter's time zone (UK time unless they live elsewhere).",
    )
    condition = models.CharField(max_length=16, choices=Condition.choices, blank=True)
    link_url = models.URLField("link", max_length=2000, blank=True)
    branch_to = models.PositiveSmallIntegerField(
        "if yes, go to step",
        null=True,
        blank=True,
        help_text="If not, they carry on with the next step.",
    )
    tag = models.ForeignKey("crm.Tag", on_delete=models.PROTECT, null=True, blank=True)
    interest = models.ForeignKey(
        "crm.CampaignInterest", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    segment = models.ForeignKey(
        "crm.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        limit_choices_to={"kind": "static"},
    )

    class Meta:
        ordering = ["journey", "version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "version", "position"], name="journeys_step_position"
            ),
        ]

    def __str__(self):
        return f"{self.position}. {self.describe()}"

    def describe(self):
        """Say what the step does, in a few words, as the report and the admin show it."""
        kind = self.Kind
        if self.kind == kind.EMAIL:
            subject = self.mailing.subject if self.mailing_id else ""
            return f"Send “{subject}”" if subject else "Send an email (not written yet)"
        if self.kind == kind.WAIT:
            parts = []
            if self.wait_days:
                parts.append(f"{self.wait_days} day{'s' if self.wait_days != 1 else ''}")
            if self.wait_weekday is not None or self.wait_hour is not None:
                day = self.get_wait_weekday_display() if self.wait_weekday is not None else ""
                hour = f"{self.wait_hour:02d}:00" if self.wait_hour is not None else ""
                until = f"until {day} at {hour}" if day and hour else f"until {day or hour}"
                parts.append(f"then {until}" if parts else until)
            return "Wait " + ", ".join(parts) if parts else "Wait"
        if self.kind == kind.BRANCH:
            what = self.get_condition_display() or "?"
            if self.condition == self.Condition.CLICKED_LINK and self.link_url:
                what = f"Clicked {self.link_url}"
            if self.condition == self.Condition.HOLDS_INTEREST and self.interest_id:
                what = f"Subscribed to {self.interest}"
            return f"If {what[0].lower()}{what[1:]}: go to step {self.branch_to}"
        target = self.tag or self.interest or self.segment
        if target is not None:
            return f"{self.get_kind_display()}: {target}"
        return self.get_kind_display()


class EnrolmentQuerySet(models.QuerySet):
    def active(self):
        return self.filter(state=Enrolment.State.ACTIVE)

    def due(self, now=None):
        return self.active().filter(due_at__lte=now or timezone.now())


class Enrolment(models.Model):
    """One supporter's passage through a journey: which step they are at, and until when.

    Unique on (journey, supporter, round): round is 1 for the first entry, 2
    for the next (journeys that may be entered again), and is the journey
    emails' `Delivery.round`, so each email goes once per entry.

    `due_at` is when the journey moves them on; a worker claims a due row by
    pushing `due_at` a lease ahead (a conditional UPDATE), so a row whose
    worker died becomes due again when the lease runs out.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "In the journey"
        DONE = "done", "Finished"
        LEFT = "left", "Left"

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed from all email"
        TOPIC = "topic", "Unsubscribed from the journey's topics"
        SUPPRESSED = "suppressed", "Address suppressed"
        BOUNCED = "bounced", "Address bounced"
        COMPLAINED = "complained", "Marked an email as spam"
        ERASED = "erased", "Erased"
        ENDED = "ended", "The journey was ended"
        REMOVED = "removed", "Removed by staff"

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrolments")
    supporter = models.ForeignKey(
        "crm.Supporter", on_delete=models.CASCADE, related_name="journey_enrolments"
    )
    round = models.PositiveIntegerField(default=1)
    # The step they are at; `at_start` until it has begun (a wait not yet set,
    # an email not yet queued).
    step = models.ForeignKey(
        JourneyStep, on_delete=models.PROTECT, null=True, blank=True, related_name="enrolments"
    )
    at_start = models.BooleanField(default=True)
    # The last email step's mailing: branches on "the previous email" read its
    # delivery, and the next email waits until it is sent.
    last_mailing_id = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    left_reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField(default=timezone.now)
    step_entered_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = EnrolmentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "supporter", "round"], name="journeys_enrolment_once"
            ),
        ]
        indexes = [
            # The work queue: each live journey's due rows, oldest first.
            models.Index(
                fields=["journey", "due_at"],
                name="journeys_enrolment_due",
                condition=Q(state="active"),
            ),
            models.Index(fields=["supporter", "journey"], name="journeys_enrolment_supporter"),
            models.Index(fields=["step", "state"], name="journeys_enrolment_step"),
        ]

    def __str__(self):
        return f"Supporter #{self.supporter_id} in {self.journey}: {self.get_state_display()}"


class StepVisit(models.Model):
    """A supporter reached a step (once per enrolment): the report's "entered" per step."""

    enrolment = models.ForeignKey(Enrolment, on_delete=models.CASCADE, related_name="visits")
    step = models.ForeignKey(JourneyStep, on_delete=models.CASCADE, related_name="visits")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["enrolment", "step"], name="journeys_visit_once"),
        ]
        indexes = [models.Index(fields=["step"], name="journeys_visit_step")]

    def __str__(self):
        return f"Enrolment #{self.enrolment_id} reached step #{self.step_id}"
