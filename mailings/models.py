import secrets
from copy import copy as shallow_copy

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    FileExtensionValidator,
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

_COLOUR = RegexValidator(
    r"^#[0-9a-fA-F]{6}$", "Write a colour as # and six hex digits, e.g. #0d3b4f."
)

# Email clients show PNG, JPEG and GIF; SVG and WebP are not safe choices.
_LOGO_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def validate_logo(upload):
    """Refuse a logo that is not a PNG, JPEG or GIF image, or is over 1 MB."""
    if upload.size > 1024 * 1024:
        raise ValidationError("The logo is over 1 MB; save it smaller (600 px wide is plenty).")
    head = upload.read(8)
    upload.seek(0)
    if not head.startswith(_LOGO_SIGNATURES):
        raise ValidationError("The logo must be a PNG, JPEG or GIF image.")


# Where the composer's images are stored (media storage), served at /newsletters/images/.
COMPOSER_IMAGES = "composer/images/"


def logo_path(instance, filename):
    """Store a logo with the composer's images, under a random name, so it is served as they are."""
    extension = filename.rsplit(".", 1)[-1].lower().replace("jpeg", "jpg")
    return f"{COMPOSER_IMAGES}{secrets.token_urlsafe(12)}.{extension}"


def new_public_id():
    return secrets.token_urlsafe(16)


class EmailTemplateQuerySet(models.QuerySet):
    def default(self):
        """Return the default template, or None when the charity has not set one up."""
        return self.filter(is_default=True).first()


class EmailTemplate(models.Model):
    """The charity's header and footer, set once; optionally a newsletter to start from."""

    name = models.CharField(max_length=100)
    logo = models.FileField(
        upload_to=logo_path,
        blank=True,
        validators=[FileExtensionValidator(["png", "jpg", "jpeg", "gif"]), validate_logo],
        help_text="PNG, JPEG or GIF, shown at most 200 px wide. Empty: the charity's name.",
    )
    logo_alt = models.CharField(
        "logo text",
        max_length=100,
        blank=True,
        help_text="What the logo says, for people who cannot see it. Empty: the site name.",
    )
    brand_colour = models.CharField(
        max_length=7, default="#0d3b4f", validators=[_COLOUR], help_text="Header and headings."
    )
    button_colour = models.CharField(
        max_length=7, default="#c8102e", validators=[_COLOUR], help_text="Buttons and accents."
    )
    background_colour = models.CharField(max_length=7, default="#f2f4f5", validators=[_COLOUR])
    text_colour = models.CharField(max_length=7, default="#1d2a33", validators=[_COLOUR])
    postal_address = models.TextField(
        blank=True, help_text="The charity's postal address, shown in every email's footer."
    )
    footer_text = models.TextField(
        blank=True,
        help_text="Shown in the footer above the unsubscribe links, e.g. a charity number.",
    )
    is_default = models.BooleanField(
        "default template", default=False, help_text="Used by newsletters that choose none."
    )
    blocks = models.JSONField(
        default=list, blank=True, help_text="A newsletter saved as a template to start from."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EmailTemplateQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="mailings_one_default_template",
            ),
        ]

    def __str__(self):
        return self.name


class MailingQuerySet(models.QuerySet):
    def editable(self):
        """Return the mailings whose content and audience may still change."""
        return self.filter(status__in=Mailing.EDITABLE_STATUSES)

    def due(self, now=None):
        """Return the scheduled mailings whose time has come."""
        return self.filter(status=Mailing.Status.SCHEDULED, scheduled_at__lte=now or timezone.now())

    def sending(self):
        return self.filter(status=Mailing.Status.SENDING)


class Mailing(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    class Kind(models.TextChoices):
        NEWSLETTER = "newsletter", "Newsletter"
        # One email step of a journey (mailings.journeys): it sends whenever a
        # supporter reaches the step, never shows in the newsletter list and
        # never finishes while its journey lives.
        JOURNEY = "journey", "Journey email"

    EDITABLE_STATUSES = (Status.DRAFT, Status.SCHEDULED)

    name = models.CharField("internal name", max_length=200)
    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.NEWSLETTER, db_default=Kind.NEWSLETTER
    )
    subject = models.CharField(
        max_length=255, blank=True, help_text="Merge fields work here too: {{ first_name }}."
    )
    preheader = models.CharField(
        max_length=255,
        blank=True,
        help_text="The short line inboxes show after the subject. Optional.",
    )
    from_name = models.CharField(
        max_length=100, blank=True, help_text="Leave empty for the default sender name."
    )
    from_email = models.EmailField(
        "from address", blank=True, help_text="Leave empty for the default sender address."
    )
    reply_to = models.EmailField("reply-to address", blank=True)
    # Raw HTML as newsletters were written before the composer. Migration 0008
    # moved every body into one "html" block; content_blocks() still reads a
    # body written here into a mailing with no blocks, so nothing is lost.
    body_html = models.TextField(
        "body (HTML)",
        blank=True,
        help_text=(
            "Raw HTML, for newsletters written before the composer. Merge "
            'fields: {{ first_name|default:"friend" }}, {{ last_name }}, {{ full_name }}, '
            "{{ postcode }}, {{ unsubscribe_url }}, {{ preferences_url }}."
        ),
    )
    body_text = models.TextField(
        "plain-text version",
        blank=True,
        help_text="Leave empty to generate it from the blocks.",
    )
    # The newsletter's content: a list of blocks (mailings.composer describes them).
    blocks = models.JSONField(default=list, blank=True)
    template = models.ForeignKey(
        EmailTemplate,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="mailings",
        help_text="The header and footer. Empty: the default template.",
    )
    # The "view in your browser" copy lives at /newsletters/<public_id>/.
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    in_archive = models.BooleanField(
        "list in the newsletter archive",
        default=False,
        help_text="Once sent, listed on the public /newsletters/ page.",
    )
    # Who allowed sending despite a problem the accessibility check blocks on.
    checks_overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    checks_overridden_at = models.DateTimeField(null=True, blank=True, editable=False)
    interests = models.ManyToManyField(
        "crm.CampaignInterest",
        blank=True,
        related_name="mailings",
        help_text="Sent to supporters subscribed to any of these; unsubscribes apply to them.",
    )
    include_segments = models.ManyToManyField(
        "crm.Segment",
        blank=True,
        related_name="mailings_including",
        verbose_name="also send to segments",
        help_text=(
            "For a mailing without interests: sent to members of these segments who are "
            "subscribed to any interest. A mailing with interests goes only to their "
            "subscribers, so consent and unsubscribes always follow a topic."
        ),
    )
    exclude_segments = models.ManyToManyField(
        "crm.Segment",
        blank=True,
        related_name="mailings_excluding",
        verbose_name="never send to segments",
        help_text="Members of these segments never receive this mailing.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(
        null=True, blank=True, help_text="When a scheduled mailing starts sending."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set once, when the audience is resolved into deliveries.
    recipient_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    audience_seconds = models.FloatField(null=True, blank=True, editable=False)
    # Touched by workers as they claim work; the sweeper re-queues a sending
    # mailing whose heartbeat went quiet (lost tasks after a broker restart).
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(
        blank=True, editable=False, help_text="Why sending stopped, when it stopped by itself."
    )
    # "bounces" or "complaints" once the deliverability guard (mailings.guard)
    # paused the mailing. Kept after staff resume it, so the guard, having
    # been overruled by a person who looked, does not pause it again.
    guard_tripped = models.CharField(max_length=16, blank=True, default="", editable=False)
    # The report's headline figures (mailings.reports.summary) when last counted,
    # so lists and the dashboard show rates without counting deliveries per view.
    stats = models.JSONField(default=dict, blank=True, editable=False)
    stats_counted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who sent or scheduled it.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MailingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("send_mailing", "Can send, schedule, pause and cancel mailings"),
            ("edit_html_block", "Can edit raw HTML blocks"),
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_at"], name="mailings_status_due"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_editable(self):
        # A journey email may be corrected while its journey runs: each send
        # renders the mailing as it is then.
        return self.kind == self.Kind.JOURNEY or self.status in self.EDITABLE_STATUSES

    def content_blocks(self):
        """Return the blocks to render: `blocks`, or a raw body_html as one "html" block."""
        if self.blocks:
            return self.blocks
        if self.body_html.strip():
            return [{"id": "body", "type": "html", "html": self.body_html}]
        return []

    def email_template(self):
        """Return the EmailTemplate the mailing renders with (its own, else the default)."""
        if self.template_id:
            return self.template
        return EmailTemplate.objects.default()

    def audience(self):
        """Return the supporters this mailing would go to now, as one query.

        Subscribers to the chosen interests, minus members of excluded segments;
        only supporters who may be emailed (active, not suppressed). A mailing
        without interests goes to members of its included segments who are
        subscribed to at least one interest. With interests, nobody outside
        them is added, since nobody agreed to that topic and a one-click
        unsubscribe from it would change nothing for them.
        """
        from crm.models import Subscription, Supporter

        interests = list(self.interests.all())
        included = list(self.include_segments.all())
        excluded = list(self.exclude_segments.all())
        wanted = []
        if interests:
            # A correlated EXISTS: a semi-join for the whole audience, and an
            # index probe per row when sending re-checks a batch of 500.
            wanted.append(
                Exists(
                    Subscription.objects.filter(
                        supporter=OuterRef("pk"),
                        interest__in=interests,
                        status=Subscription.Status.SUBSCRIBED,
                    )
                )
            )
        else:
            for segment in included:
                members = segment.supporters().subscribed_to_any().order_by().values("pk")
                wanted.append(Q(pk__in=members))
        if not wanted:
            return Supporter.objects.none()
        either = wanted[0]
        for condition in wanted[1:]:
            either |= condition
        audience = Supporter.objects.mailable().filter(either)
        for segment in excluded:
            audience = audience.exclude(pk__in=segment.supporters().order_by().values("pk"))
        return audience.order_by()


class DeliveryQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(
            status__in=(Delivery.Status.QUEUED, Delivery.Status.SENDING, Delivery.Status.HELD)
        )

    def claimable(self, now=None):
        """Return queued deliveries whose retry time, if any, has come."""
        now = now or timezone.now()
        return self.filter(status=Delivery.Status.QUEUED).filter(
            Q(retry_at__isnull=True) | Q(retry_at__lte=now)
        )

    def lease_expired(self, now=None):
        return self.filter(status=Delivery.Status.SENDING, claimed_until__lt=now or timezone.now())


class Delivery(models.Model):
    """One supporter's copy of one mailing.

    Unique on (mailing, supporter, round), so "sent twice" cannot be recorded.
    A newsletter's deliveries are all round 0; a journey email's round is the
    supporter's enrolment in the journey (1, 2, ...), so someone who enters a
    journey again receives its emails once per entry. The
    send state (status) moves queued → sending → sent or failed; what the
    ESP reports afterwards lands in the timestamps below, each set once.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        # The worker stopped during the ESP call and the ESP cannot be asked
        # whether it accepted the message (see docs/sending.md).
        UNKNOWN = "unknown", "Fate unknown"
        SKIPPED = "skipped", "Skipped (no longer subscribed)"
        CANCELLED = "cancelled", "Cancelled"
        # The rest of an A/B test's audience, waiting for the winner (never claimed).
        HELD = "held", "Waiting for the A/B test's winner"

    FINISHED = (Status.SENT, Status.FAILED, Status.UNKNOWN, Status.SKIPPED, Status.CANCELLED)

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="deliveries")
    supporter = models.ForeignKey(
        "crm.Supporter", on_delete=models.CASCADE, related_name="deliveries"
    )
    round = models.PositiveIntegerField(default=0, db_default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    # Set, and committed, just before the ESP call: a lease that expires with
    # this empty was never sent; with it set, the ESP may have the message.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    esp_message_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    deferred_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    # A/B tests: the variant this recipient gets, and whether they were in the
    # test (the rest get the winner). No index: reports read one mailing's rows.
    variant = models.ForeignKey(
        "Variant",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deliveries",
        db_index=False,
    )
    in_ab_test = models.BooleanField(default=False, db_default=False)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField("first opened", null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField("first clicked", null=True, blank=True)
    last_clicked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["mailing", "supporter", "round"], name="mailings_delivery_once"
            ),
        ]
        indexes = [
            models.Index(fields=["mailing", "status"], name="mailings_delivery_state"),
            # The work queue: claims take the lowest ids of a mailing's queued rows.
            models.Index(
                fields=["mailing", "id"],
                name="mailings_delivery_queue",
                condition=Q(status="queued"),
            ),
            models.Index(
                fields=["esp_message_id"],
                name="mailings_delivery_esp_id",
                condition=~Q(esp_message_id=""),
            ),
            # Segment rules ask "who opened (clicked) anything since …?".
            models.Index(
                fields=["last_opened_at", "supporter"],
                name="mailings_delivery_opened",
                condition=Q(last_opened_at__isnull=False),
            ),
            models.Index(
                fields=["last_clicked_at", "supporter"],
                name="mailings_delivery_clicked",
                condition=Q(last_clicked_at__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.mailing} to supporter #{self.supporter_id}: {self.get_status_display()}"


class DeliveryEvent(models.Model):
    """One tracking event from the ESP, kept once (the ESP may send it again).

    The webhook request only records it (`pending`); a worker then applies
    pending events to their deliveries and supporters in batches
    (mailings.tracking).
    """

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    # Indexed by mailings_event_report, which starts with it: one index fewer
    # for every event a webhook records.
    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    esp_name = models.CharField(max_length=32)
    # The ESP's event id, or a digest of what identifies the event when the
    # ESP sends none (see tracking.dedupe_key).
    dedupe_key = models.CharField(max_length=128)
    event_type = models.CharField(max_length=24)
    timestamp = models.DateTimeField()
    url = models.URLField(max_length=2000, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    # "bounced", "complained" or "unsubscribed" when the event means the
    # address must never be emailed again (tracking.UNDELIVERABLE).
    # (Database defaults, so code of the previous release can still insert
    # rows while an upgrade rolls out.)
    suppress_as = models.CharField(max_length=16, blank=True, default="", db_default="")
    # Recorded but not yet applied to the delivery and the supporter.
    pending = models.BooleanField(default=False, db_default=False)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp_name", "dedupe_key"], name="mailings_event_once"),
        ]
        indexes = [
            models.Index(
                fields=["mailing", "event_type", "timestamp"], name="mailings_event_report"
            ),
            # The inbox: appliers take the oldest pending events.
            models.Index(fields=["id"], name="mailings_event_pending", condition=Q(pending=True)),
        ]

    def __str__(self):
        return f"{self.event_type} at {self.timestamp:%Y-%m-%d %H:%M}"


class ABTest(models.Model):
    """An A/B test of a mailing: its variants go to a share of the audience, the winner to the rest.

    mailings.abtests assigns the recipients, chooses the winner and judges
    the results.
    """

    class Measure(models.TextChoices):
        CLICKS = "clicks", "Unique clicks"
        OPENS = "opens", "Unique opens (unreliable: Apple Mail opens every message)"

    class Choice(models.TextChoices):
        AUTO = "auto", "Automatically, when the test ends"
        STAFF = "staff", "By staff, on the mailing's page"

    mailing = models.OneToOneField(Mailing, on_delete=models.CASCADE, related_name="ab_test")
    test_percent = models.PositiveSmallIntegerField(
        "test share (%)",
        default=20,
        validators=[MinValueValidator(2), MaxValueValidator(100)],
        help_text="The share of the audience that tests the variants, split evenly between "
        "them. The rest get the winner. 100: everyone gets a variant, nobody waits.",
    )
    measure = models.CharField(
        "winner by",
        max_length=16,
        choices=Measure.choices,
        default=Measure.CLICKS,
        help_text="Opens are counted by a hidden image: Apple Mail loads it for every "
        "message, so opens can make a variant look better than it is. Clicks are real.",
    )
    test_hours = models.PositiveSmallIntegerField(
        "test length (hours)",
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(168)],
        help_text="How long to wait for results after the test messages start going out.",
    )
    choose = models.CharField(
        "winner chosen", max_length=16, choices=Choice.choices, default=Choice.AUTO
    )
    # Set when the audience is resolved: when the test's time is up.
    ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner = models.ForeignKey(
        "Variant", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    winner_chosen_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner_chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )

    class Meta:
        verbose_name = "A/B test"
        verbose_name_plural = "A/B test"
        indexes = [
            models.Index(
                fields=["ends_at"], name="mailings_abtest_due", condition=Q(winner__isnull=True)
            ),
        ]

    def __str__(self):
        return f"{self.test_percent}% tested, winner by {self.get_measure_display().lower()}"


class Variant(models.Model):
    """One version of an A/B-tested mailing: its subject, and perhaps its preheader and blocks."""

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(default=0, editable=False)
    subject = models.CharField(
        max_length=255, help_text="Merge fields work here too: {{ first_name }}."
    )
    preheader = models.CharField(
        max_length=255, blank=True, help_text="Empty: the mailing's own preheader."
    )
    # Empty: the mailing's own blocks.
    blocks = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["mailing", "position"], name="mailings_variant_once"),
        ]

    def __str__(self):
        return f"Variant {self.label}"

    @property
    def label(self):
        return "ABCDEFGH"[self.position] if self.position < 8 else str(self.position + 1)

    def applied_to(self, mailing):
        """Return a copy of `mailing` (not saved) as this variant sends it."""
        copy = shallow_copy(mailing)
        copy.subject = self.subject
        if self.preheader:
            copy.preheader = self.preheader
        if self.blocks:
            copy.blocks = self.blocks
            copy.body_text = ""  # a hand-written text part belongs to the mailing's blocks
        return copy
