import hashlib
import re

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from crm.models import CampaignInterest, PartnerOrganisation, Supporter

# Supporter fields an action may ask for besides the email address, in form order.
FIELDS = {
    "first_name": "First name",
    "last_name": "Last name",
    "postcode": "Postcode",
    "country": "Country",
    "phone": "Phone",
}
DEFAULT_FIELDS = ["first_name", "last_name", "postcode"]
# A web origin as CSP's frame-ancestors takes it: scheme, host, optional port; nothing more.
ORIGIN = re.compile(r"https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?")


def wording_version(text: str) -> str:
    """Return the version recorded with a wording: a hash of the text, so new words never
    share a version with old ones."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


class ActionQuerySet(models.QuerySet):
    def published(self):
        return self.filter(status__in=(Action.Status.OPEN, Action.Status.CLOSED))


class Action(models.Model):
    """A petition, pledge or event sign-up with its public page at /act/<slug>/."""

    class Kind(models.TextChoices):
        PETITION = "petition", "Petition"
        PLEDGE = "pledge", "Pledge"
        EVENT = "event", "Event sign-up"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (not public)"
        OPEN = "open", "Open for signatures"
        CLOSED = "closed", "Closed (page shows the total, no form)"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PETITION)
    title = models.CharField(max_length=200)
    slug = models.SlugField(
        unique=True, help_text="The page's address: /act/<slug>/. Keep it once shared."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    summary = models.CharField(
        max_length=300, blank=True, help_text="One or two sentences, shown first and in shares."
    )
    blocks = models.JSONField(default=list, blank=True, help_text="The page's text.")
    target = models.CharField(
        max_length=200,
        blank=True,
        help_text="Petitions: who it is addressed to, e.g. 'The Foreign Secretary'.",
    )
    fields = models.JSONField(
        default=list,
        blank=True,
        help_text="Fields asked besides the email address (first_name, last_name, postcode, "
        "country, phone).",
    )
    goal = models.PositiveIntegerField(default=1000, help_text="Signatures aimed for.")
    button_label = models.CharField(max_length=60, blank=True, help_text="Default: 'Sign'.")
    thank_you = models.TextField(
        blank=True, help_text="Shown after signing; default: a thank-you asking them to share."
    )
    opt_in_wording = models.TextField(
        blank=True,
        help_text="The words of the box to hear from us; empty uses the default wording.",
    )
    interests = models.ManyToManyField(
        CampaignInterest,
        blank=True,
        related_name="+",
        help_text="Topics a signer who ticks the box is subscribed to (after confirming).",
    )
    partners = models.ManyToManyField(
        PartnerOrganisation, through="ActionPartner", blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ActionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.title

    def asked(self) -> list[str]:
        """Return the supporter fields the form asks for, in form order."""
        chosen = set(self.fields or DEFAULT_FIELDS)
        return [name for name in FIELDS if name in chosen]

    def charity_wording(self) -> str:
        text = self.opt_in_wording or settings.RALLY_ACTION_OPT_IN_WORDING
        return text.format(site_name=settings.SITE_NAME)


class ActionPartner(models.Model):
    """A co-sponsoring partner of an action: its own opt-in box, wording and privacy link."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="cosponsors")
    partner = models.ForeignKey(PartnerOrganisation, on_delete=models.PROTECT, related_name="+")
    wording = models.TextField(
        help_text="The box's words, e.g. 'Yes, Aegis Trust may email me about its campaigns.'"
    )
    privacy_url = models.URLField("privacy notice", max_length=500)
    shared_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="Fields the partner receives besides the email address, if the action asks "
        "them (first_name, last_name, postcode, country, phone).",
    )
    embed_origins = models.TextField(
        blank=True,
        help_text="Web addresses allowed to show this action in a frame, one per line, "
        "e.g. https://www.aegistrust.org",
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "co-sponsoring partner"
        constraints = [
            models.UniqueConstraint(fields=["action", "partner"], name="actions_partner_unique"),
        ]

    def __str__(self):
        return str(self.partner)

    def origins(self) -> list[str]:
        """Return the listed origins; anything else (which the admin refuses) is dropped."""
        lines = (line.strip().rstrip("/") for line in self.embed_origins.splitlines())
        return [line for line in lines if ORIGIN.fullmatch(line)]

    def fields_shared(self) -> list[str]:
        """Return the fields this partner receives: those agreed that the action asks."""
        asked = set(self.action.asked())
        return [name for name in self.shared_fields if name in asked]

    def version(self) -> str:
        return wording_version(f"{self.wording}\n{self.privacy_url}")


class SignatureQuerySet(models.QuerySet):
    def by_source(self):
        """Return [{"source", "partner__name", "signatures", "opted_in"}] per source."""
        return (
            self.values("source", "source_partner__name")
            .annotate(signatures=Count("id"), opted_in=Count("id", filter=Q(opted_in=True)))
            .order_by("-signatures", "source")
        )


class Signature(models.Model):
    """One person's signature on one action (counted once however often they sign).

    The person is a supporter (found or created by address), but signing is
    not subscribing: the choices they made are kept here, and consent is
    recorded by crm's services, at once or when they confirm their address.
    """

    class Confirmation(models.TextChoices):
        NONE = "none", "Nothing to confirm"
        PENDING = "pending", "Waiting for email confirmation"
        CONFIRMED = "confirmed", "Confirmed"

    action = models.ForeignKey(
        Action,
        on_delete=models.CASCADE,
        related_name="signatures",
        db_index=False,  # actions_signature_once_per_person (action, supporter)
    )
    supporter = models.ForeignKey(
        Supporter,
        on_delete=models.CASCADE,
        related_name="signatures",
        db_index=False,  # actions_signature_supporter (supporter, action)
    )
    source = models.CharField(
        max_length=100, blank=True, help_text="Where the signature came from (?source=...)."
    )
    source_partner = models.ForeignKey(
        PartnerOrganisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # actions_signature_partner, a partial index
        help_text="The co-sponsor whose page or link brought them.",
    )
    opted_in = models.BooleanField(default=False, help_text="Ticked the box to hear from us.")
    # [{"partner": id, "wording": ..., "version": ..., "fields": [...]}] for each partner
    # box ticked, as shown, so confirming records exactly what they read.
    partner_choices = models.JSONField(default=list, blank=True)
    wording = models.TextField(blank=True)
    wording_version = models.CharField(max_length=64, blank=True)
    confirmation = models.CharField(
        max_length=16, choices=Confirmation.choices, default=Confirmation.NONE
    )
    page_url = models.CharField(max_length=500, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # Set when the email asking to confirm the pending choices is queued (and
    # cleared when signing again adds one): pending signatures without it are
    # the outbox mailings.actions.services.action_confirmations_send empties.
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = SignatureQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["action", "supporter"], name="actions_signature_once_per_person"
            ),
        ]
        indexes = [
            models.Index(fields=["supporter", "action"], name="actions_signature_supporter"),
            models.Index(
                fields=["source_partner"],
                name="actions_signature_partner",
                condition=Q(source_partner__isnull=False),
            ),
            models.Index(
                fields=["id"],
                name="actions_signature_to_email",
                condition=Q(confirmation="pending", emailed_at__isnull=True),
            ),
        ]

    def __str__(self):
        return f"Signature #{self.pk} on {self.action}"
