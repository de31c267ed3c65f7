import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower, Trim
from django.utils import timezone
from django_countries.fields import CountryField
from simple_history.models import HistoricalRecords


def normalize_email(email):
    """Return the form of `email` that identifies a person: trimmed and lower-cased."""
    return (email or "").strip().lower()


class LawfulBasis(models.TextChoices):
    CONSENT = "consent", "Consent"
    LEGITIMATE_INTERESTS = "legitimate_interests", "Legitimate interests"
    CONTRACT = "contract", "Contract"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation"


class CampaignInterest(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_public = models.BooleanField(
        "public",
        default=True,
        help_text="Public interests appear on the sign-up form and in the preference centre.",
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Lower comes first.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "campaign interest"

    def __str__(self):
        return self.name


class PartnerOrganisation(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    website = models.URLField(blank=True)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.EmailField(blank=True)
    agreement_date = models.DateField("data-sharing agreement date", null=True, blank=True)
    lawful_basis = models.CharField(
        max_length=32,
        choices=LawfulBasis.choices,
        default=LawfulBasis.CONSENT,
        help_text="The lawful basis on which this partner's list is shared with us.",
    )
    is_active = models.BooleanField("active", default=True)
    last_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When we last sent this partner their sync export."
    )
    # The partner's file headers last matched to Rally's fields at import:
    # {"their header": "rally field" or ""}, offered again for their next file.
    column_mapping = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "partner organisation"

    def __str__(self):
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


def _on_suppression_list():
    """Whether the supporter's address is on the suppression list (for filters and annotations)."""
    return Exists(Suppression.objects.filter(email_hash=OuterRef("email_hash")))


class SupporterQuerySet(models.QuerySet):
    def with_email(self, email):
        """Return the supporters whose address matches `email`, case and spaces aside."""
        return self.alias(email_key=Lower("email")).filter(email_key=normalize_email(email))

    def with_emails(self, emails):
        keys = {normalize_email(email) for email in emails}
        return self.alias(email_key=Lower("email")).filter(email_key__in=keys)

    def active(self):
        return self.filter(status=Supporter.Status.ACTIVE)

    def with_suppressed(self):
        """Annotate each supporter with `suppressed`: is their address on the suppression list?"""
        return self.annotate(suppressed=_on_suppression_list())

    def not_suppressed(self):
        return self.exclude(_on_suppression_list())

    def mailable(self):
        """Return the supporters we may email at all: active and not suppressed."""
        return self.active().not_suppressed()

    def interested_in(self, *interests):
        """Return the supporters currently subscribed to any of `interests`."""
        return self.filter(
            Exists(
                Subscription.objects.filter(
                    supporter=OuterRef("pk"),
                    interest__in=interests,
                    status=Subscription.Status.SUBSCRIBED,
                )
            )
        )

    def subscribed_to_any(self):
        return self.filter(
            Exists(
                Subscription.objects.filter(
                    supporter=OuterRef("pk"), status=Subscription.Status.SUBSCRIBED
                )
            )
        )

    def from_partner(self, partner):
        return self.filter(partner=partner)

    def tagged(self, *names):
        return self.filter(
            Exists(
                Supporter.tags.through.objects.filter(supporter=OuterRef("pk"), tag__name__in=names)
            )
        )


class Supporter(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed from all email"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        ERASED = "erased", "Erased"

    class Source(models.TextChoices):
        SIGNUP_FORM = "signup_form", "Sign-up form"
        PARTNER_IMPORT = "partner_import", "Partner import"
        STAFF = "staff", "Added by staff"
        EVENT = "event", "Event"
        PETITION = "petition", "Petition"
        OTHER = "other", "Other"

    email = models.EmailField(max_length=254)
    # Keyed hash of the normalised address, the same as on the suppression list,
    # so "is this supporter suppressed?" is an indexed join, not a Python loop.
    # Indexed in Meta: db_index would add a second, pattern-matching index on
    # PostgreSQL that no query uses (hashes are only compared whole).
    email_hash = models.CharField(max_length=64, editable=False)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    postcode = models.CharField(max_length=16, blank=True)
    country = CountryField(default="GB")
    phone = models.CharField(max_length=32, blank=True)
    organisation = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.STAFF)
    partner = models.ForeignKey(
        PartnerOrganisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="supporters",
        help_text="The partner organisation this supporter first came from, if any.",
        db_index=False,  # crm_supporter_partner (partner, status) serves lookups by partner
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    import_batch = models.ForeignKey(
        "crm.ImportBatch",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="created_supporters",
        help_text="The partner import that created this supporter, if one did.",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="supporters")
    notes = models.TextField(blank=True, help_text="For staff only; never shown to the supporter.")
    # Bumped to revoke every link this supporter was ever sent (see mailings.tokens).
    link_version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(
        excluded_fields=["email_hash", "updated_at", "link_version"],
        cascade_delete_history=True,
        # History is read per supporter (by id) and by change date, never by
        # these fields; indexes on them would only slow every write.
        no_db_index=["created_at", "partner", "import_batch"],
    )
    objects = SupporterQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("erase_supporter", "Can erase a supporter's personal data"),
            ("export_supporter_data", "Can export everything held about a supporter"),
            ("export_supporters", "Can export supporter lists"),
            ("import_supporters", "Can import partner lists"),
        ]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="crm_supporter_email_ci_unique",
                violation_error_message="A supporter with this email address already exists.",
            ),
            models.CheckConstraint(
                condition=Q(email=Trim("email")),
                name="crm_supporter_email_trimmed",
                violation_error_message="The email address must not start or end with spaces.",
            ),
        ]
        indexes = [
            models.Index(fields=["email_hash"], name="crm_supporter_email_hash"),
            models.Index(fields=["status"], name="crm_supporter_status"),
            models.Index(fields=["partner", "status"], name="crm_supporter_partner"),
            models.Index(fields=["country"], name="crm_supporter_country"),
            models.Index(fields=["postcode"], name="crm_supporter_postcode"),
            models.Index(fields=["last_name"], name="crm_supporter_last_name"),
        ]

    def __str__(self):
        if self.status == self.Status.ERASED:
            return f"Erased supporter #{self.pk}"
        return self.full_name or self.email

    def save(self, *args, **kwargs):
        self.email_hash = email_hash(self.email) if self.email else ""
        super().save(*args, **kwargs)

    def clean(self):
        self.email = self.email.strip()
        self.email_hash = email_hash(self.email) if self.email else ""
        erased_address = Suppression.objects.filter(
            email_hash=self.email_hash, reason=Suppression.Reason.ERASURE
        )
        if (
            self.email
            and self.status != self.Status.ERASED
            and self.email_changed()
            and erased_address.exists()
        ):
            raise ValidationError(
                {
                    "email": "This address belongs to a supporter whose data was erased "
                    "at their request; it cannot be added again."
                }
            )

    @property
    def full_name(self):
        return f"{self.first_name} {self.last_name}".strip()

    def email_changed(self):
        if self.pk is None:
            return True
        stored = Supporter.objects.filter(pk=self.pk).values_list("email", flat=True).first()
        return normalize_email(stored or "") != normalize_email(self.email)

    def is_suppressed(self):
        return Suppression.objects.filter(email_hash=self.email_hash).exists()


def email_hash(email):
    """Return the keyed hash that identifies `email` on the suppression list."""
    return email_hasher()(email)


def email_hasher():
    """Return a function like email_hash with the key read once, for hashing in bulk."""
    key = (settings.RALLY_SUPPRESSION_KEY or f"rally.suppression:{settings.SECRET_KEY}").encode()

    def hasher(email):
        return hmac.digest(key, normalize_email(email).encode(), hashlib.sha256).hex()

    return hasher


class Subscription(models.Model):
    """The current state of one supporter's subscription to one interest.

    The ConsentRecord history is the source of truth; services write both in
    one transaction so this row always matches the latest record.
    """

    class Status(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    # Both foreign keys are served by the composite unique constraint and index
    # below; single-column indexes would only slow bulk inserts (imports).
    supporter = models.ForeignKey(
        Supporter, on_delete=models.CASCADE, related_name="subscriptions", db_index=False
    )
    interest = models.ForeignKey(
        CampaignInterest, on_delete=models.PROTECT, related_name="subscriptions", db_index=False
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["supporter", "interest"], name="crm_subscription_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["interest", "status", "supporter"], name="crm_sub_interest"),
        ]

    def __str__(self):
        return f"{self.interest}: {self.get_status_display()}"


class ConsentRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Consent records are append-only; they cannot be updated.")

    def delete(self):
        raise TypeError(
            "Consent records are append-only; only supporter_erase() and "
            "supporters_delete_unused_import() may remove them."
        )

    def _erase(self):
        """Delete these records (supporter_erase and supporters_delete_unused_import only)."""
        return super().delete()


class ConsentRecord(models.Model):
    """One consent given or withdrawn. Never edited, and deleted only with its supporter.

    Two services remove records, and no other code may (tests/test_consent_writes.py
    checks): supporter_erase(), at the supporter's request, and
    supporters_delete_unused_import(), which deletes people an import created
    that nothing has used since, with the import's own grants. Everything
    else withdraws: a "withdrawn" record is appended after the "granted" one.
    """

    class Action(models.TextChoices):
        GRANTED = "granted", "Granted"
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Method(models.TextChoices):
        SIGNUP_FORM = "signup_form", "Sign-up form"
        EMAIL_LINK = "email_link", "Email link"
        ONE_CLICK = "one_click", "One-click unsubscribe"
        STAFF = "staff", "Staff"
        PARTNER_IMPORT = "partner_import", "Partner import"
        COMPLAINT = "complaint", "Complaint (via ESP webhook)"
        BOUNCE = "bounce", "Hard bounce (via ESP webhook)"
        ESP_UNSUBSCRIBE = "esp_unsubscribe", "Unsubscribe at the ESP (via webhook)"
        ACTION_PAGE = "action_page", "Action page"
        PARTNER_OPT_OUT = "partner_opt_out", "Opt-out sent by a partner"

    supporter = models.ForeignKey(
        Supporter,
        on_delete=models.CASCADE,
        related_name="consent_records",
        db_index=False,  # crm_consent_supporter (supporter, created_at) serves it
    )
    interest = models.ForeignKey(
        CampaignInterest,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty means all email.",
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    method = models.CharField(max_length=32, choices=Method.choices)
    lawful_basis = models.CharField(
        max_length=32, choices=LawfulBasis.choices, default=LawfulBasis.CONSENT
    )
    wording = models.TextField(blank=True, help_text="The exact wording shown, if any.")
    wording_version = models.CharField(max_length=32, blank=True)
    partner = models.ForeignKey(
        PartnerOrganisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # crm_consent_partner, a partial index
    )
    import_batch = models.ForeignKey(
        "crm.ImportBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consent_records",
        db_index=False,  # crm_consent_import_batch, a partial index
    )
    mailing = models.ForeignKey(
        "mailings.Mailing",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consent_records",
        help_text="The mailing whose link or header the change came from.",
        db_index=False,  # crm_consent_mailing, a partial index (most records have none)
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff member who made the change, if one did.",
        db_index=False,  # crm_consent_actor, a partial index
    )
    actor_label = models.CharField(
        max_length=200, blank=True, help_text="What made the change when no staff member did."
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["supporter", "created_at"], name="crm_consent_supporter"),
            models.Index(fields=["action", "created_at"], name="crm_consent_action"),
            models.Index(
                fields=["mailing"], name="crm_consent_mailing", condition=Q(mailing__isnull=False)
            ),
            models.Index(
                fields=["actor"], name="crm_consent_actor", condition=Q(actor__isnull=False)
            ),
            # Most consent comes from neither a partner nor an import.
            models.Index(
                fields=["partner"], name="crm_consent_partner", condition=Q(partner__isnull=False)
            ),
            models.Index(
                fields=["import_batch"],
                name="crm_consent_import_batch",
                condition=Q(import_batch__isnull=False),
            ),
        ]

    def __str__(self):
        topic = self.interest or "all email"
        return f"{self.get_action_display()} {topic} ({self.get_method_display()})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Consent records are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError(
            "Consent records are append-only; only supporter_erase() and "
            "supporters_delete_unused_import() may remove them."
        )


class Suppression(models.Model):
    """An address we must never email again, kept as a keyed hash only."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Complaint"
        ERASURE = "erasure", "Erased at the supporter's request"
        STAFF = "staff", "Added by staff"
        ESP_UNSUBSCRIBE = "esp_unsubscribe", "Unsubscribed at the ESP"

    email_hash = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    note = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_reason_display()} ({self.created_at:%Y-%m-%d})"


class Segment(models.Model):
    class Kind(models.TextChoices):
        STATIC = "static", "Static list"
        RULES = "rules", "Rule-based"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.RULES)
    # The saved definition of a rule-based segment; see crm.segments for the keys.
    rules = models.JSONField(default=dict, blank=True)
    members = models.ManyToManyField(
        Supporter, through="SegmentMembership", related_name="segments", blank=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # How many members it had when last counted (a periodic task and saving
    # count it), so lists show sizes without counting every segment per view.
    size = models.PositiveIntegerField(null=True, blank=True, editable=False)
    size_counted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def supporters(self):
        """Return this segment's supporters as one database query."""
        from crm.segments import rules_filter

        if self.kind == self.Kind.STATIC:
            return Supporter.objects.filter(
                Exists(SegmentMembership.objects.filter(segment=self, supporter=OuterRef("pk")))
            )
        return Supporter.objects.filter(rules_filter(self.rules))


class SegmentMembership(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    supporter = models.ForeignKey(
        Supporter, on_delete=models.CASCADE, related_name="segment_memberships"
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "supporter"], name="crm_segment_member_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["supporter", "segment"], name="crm_member_supporter"),
        ]

    def __str__(self):
        return f"{self.supporter_id} in {self.segment}"


class ImportBatch(models.Model):
    """One partner list imported (or previewed) by staff or by the sync command.

    A batch is created by a clean preview (crm.imports.import_preview) and
    holds the uploaded file until it is confirmed, so the confirm step applies
    exactly the file, options and plan that were previewed.
    """

    class Status(models.TextChoices):
        PREVIEWED = "previewed", "Previewed"
        QUEUED = "queued", "Waiting to import"
        RUNNING = "running", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"
        REVERTED = "reverted", "Reverted"
        EXPIRED = "expired", "Preview expired"

    partner = models.ForeignKey(
        PartnerOrganisation, on_delete=models.PROTECT, related_name="import_batches"
    )
    interests = models.ManyToManyField(
        CampaignInterest,
        blank=True,
        related_name="+",
        help_text="Interests every row was subscribed to, besides those named in the file.",
    )
    file_name = models.CharField(max_length=255)
    file_hash = models.CharField(max_length=64, help_text="SHA-256 of the uploaded file.")
    # The uploaded file, kept only between preview and confirm (then emptied):
    # in the database, so a worker on another machine reads the same bytes.
    file_data = models.BinaryField(null=True, blank=True, editable=False)
    # The previewed plan (crm.imports.ImportPlan.payload), kept likewise: the
    # confirm step applies it as it stands instead of planning the file again.
    plan_data = models.BinaryField(null=True, blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="Format, encoding and merge options chosen."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREVIEWED)
    row_count = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    counts = models.JSONField(default=dict, blank=True)
    # SHA-256 of the stored plan and of the database state it was made from
    # (the matched supporters, their subscriptions, suppressions); the confirm
    # step recomputes it under locks and refuses if anything differs.
    preview_digest = models.CharField(max_length=64, blank=True, editable=False)
    # [row number, outcome, message] for every row that was not plainly new,
    # updated or unchanged. Messages never contain email addresses.
    report = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "import batch"
        verbose_name_plural = "import batches"
        indexes = [
            models.Index(fields=["file_hash"], name="crm_importbatch_file_hash"),
        ]

    def __str__(self):
        return f"{self.file_name} from {self.partner} ({self.created_at:%Y-%m-%d})"


class AuditEvent(models.Model):
    """Something staff or the system did that is not a field change on a supporter.

    Field changes are kept by simple-history on the supporter itself. Audit
    events never hold personal data: they name supporters by id only.
    """

    class Kind(models.TextChoices):
        CONSENT_GRANTED = "consent_granted", "Consent granted"
        CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn"
        SUPPRESSED = "suppressed", "Address suppressed"
        UNSUPPRESSED = "unsuppressed", "Address removed from the suppression list"
        SEGMENT_ADDED = "segment_added", "Added to segment"
        SEGMENT_REMOVED = "segment_removed", "Removed from segment"
        SEGMENT_CHANGED = "segment_changed", "Segment rules changed"
        DATA_EXPORTED = "data_exported", "Personal data exported"
        ERASED = "erased", "Supporter erased"
        EXPORTED = "exported", "List exported"
        IMPORTED = "imported", "List imported"
        IMPORT_REVERTED = "import_reverted", "List import reverted"
        LINKS_REVOKED = "links_revoked", "Email links revoked"
        CHECKS_OVERRIDDEN = "checks_overridden", "Sending allowed despite accessibility problems"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    supporter = models.ForeignKey(
        Supporter,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
        db_index=False,  # crm_audit_supporter (supporter, created_at) serves it
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # crm_audit_actor, a partial index (most events have none)
    )
    source = models.CharField(max_length=200, blank=True, help_text="What made the change.")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["supporter", "created_at"], name="crm_audit_supporter"),
            models.Index(
                fields=["actor"], name="crm_audit_actor", condition=Q(actor__isnull=False)
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"


class PartnerConsentQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Partner consents are append-only; they cannot be updated.")

    def latest_action(self, *, partner):
        """Return a subquery of the latest action for OuterRef("pk") (a supporter) and `partner`."""
        return (
            self.filter(supporter=OuterRef("pk"), partner=partner)
            .order_by("-created_at", "-id")
            .values("action")[:1]
        )


class PartnerConsent(models.Model):
    """One opt-in to hear from a partner organisation, or its withdrawal. Never edited.

    The latest record for a supporter and partner is their current answer: while
    it is "granted", the partner's sync export carries the supporter's email
    address and the `fields` they agreed to share (crm.exports.partner_sync_rows).
    Written only by crm.services.partner_consent; erased with the supporter's data.
    """

    class Action(models.TextChoices):
        GRANTED = "granted", "Opted in"
        WITHDRAWN = "withdrawn", "Withdrawn"

    supporter = models.ForeignKey(
        Supporter,
        on_delete=models.CASCADE,
        related_name="partner_consents",
        db_index=False,  # crm_partnerconsent_supporter (supporter, partner, created_at)
    )
    partner = models.ForeignKey(
        PartnerOrganisation,
        on_delete=models.PROTECT,
        related_name="consents",
        db_index=False,  # crm_partnerconsent_partner (partner, created_at)
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    fields = models.JSONField(
        default=list, blank=True, help_text="Supporter fields shared besides the email address."
    )
    wording = models.TextField(blank=True, help_text="The exact wording shown, if any.")
    wording_version = models.CharField(max_length=64, blank=True)
    page_url = models.CharField(max_length=500, blank=True, help_text="Where it was given.")
    source = models.CharField(max_length=200, blank=True, help_text="What made the change.")
    optout_file = models.ForeignKey(
        "crm.PartnerOptOutFile",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consents",
        db_index=False,  # crm_partnerconsent_optout_file, a partial index
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PartnerConsentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "partner opt-in"
        indexes = [
            models.Index(
                fields=["supporter", "partner", "created_at"], name="crm_partnerconsent_supporter"
            ),
            models.Index(fields=["partner", "created_at"], name="crm_partnerconsent_partner"),
            models.Index(
                fields=["optout_file"],
                name="crm_partnerconsent_optout",
                condition=Q(optout_file__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.get_action_display()}: {self.partner}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Partner consents are append-only; they cannot be updated.")
        super().save(*args, **kwargs)


class PartnerOptOutFile(models.Model):
    """The receipt for one file of opt-outs a partner sent back, applied by staff.

    It names no supporter: counts, and the rows that matched nobody (row
    number and the address as the partner wrote it, so staff can tell them).
    """

    partner = models.ForeignKey(
        PartnerOrganisation, on_delete=models.PROTECT, related_name="optout_files"
    )
    file_name = models.CharField(max_length=255)
    file_hash = models.CharField(max_length=64, help_text="SHA-256 of the file.")
    rows = models.PositiveIntegerField(default=0, help_text="Addresses in the file.")
    matched = models.PositiveIntegerField(default=0, help_text="Rows that matched a supporter.")
    withdrawn = models.PositiveIntegerField(
        default=0, help_text="Supporters who had something from this partner withdrawn."
    )
    subscriptions_withdrawn = models.PositiveIntegerField(default=0)
    opt_ins_withdrawn = models.PositiveIntegerField(default=0)
    unmatched = models.JSONField(
        default=list, blank=True, help_text="[row number, address] of rows that matched nobody."
    )
    invalid = models.JSONField(
        default=list, blank=True, help_text="[row number, value] of rows with no usable address."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "partner opt-out file"

    def __str__(self):
        return f"{self.file_name} from {self.partner} ({self.created_at:%Y-%m-%d})"
