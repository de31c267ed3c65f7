"""
API keys for integrations, and outbound webhook endpoints with their deliveries.

A key's secret is shown once, when staff create it, and kept only as its
SHA-256 (the secret is 32 random bytes, so a fast hash cannot be brute-forced);
its prefix finds the row. An endpoint's signing secret is kept as it is: Rally
needs it to sign every delivery.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Scope(models.TextChoices):
    READ_SUPPORTERS = "supporters:read", "Read supporters and their subscriptions"
    WRITE_SUPPORTERS = "supporters:write", "Add and update supporters, subscribe and unsubscribe"
    SIGN_ACTIONS = "actions:sign", "Sign actions (petitions) for supporters"
    READ_MAILINGS = "mailings:read", "Read mailing results"


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    name = models.CharField(
        max_length=200, help_text="Who or what uses this key: “Aegis Trust petitions”."
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    partner = models.ForeignKey(
        "crm.PartnerOrganisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="A partner's key sees only the supporters who came from that partner, "
        "and records the partner on every consent it brings.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Calls that changed nothing and read no supporter (interests, mailing
    # results) are only counted here; the others are in the audit trail.
    call_count = models.PositiveBigIntegerField(default=0, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope):
        return scope in self.scopes

    def scope_labels(self):
        labels = dict(Scope.choices)
        return [labels.get(scope, scope) for scope in self.scopes]


class Event(models.TextChoices):
    SUBSCRIBED = "supporter.subscribed", "Supporter subscribed"
    WITHDREW = "supporter.withdrew", "Supporter left an interest"
    UNSUBSCRIBED_ALL = "supporter.unsubscribed", "Supporter unsubscribed from all email"
    BOUNCED = "supporter.bounced", "Supporter's address bounced"
    COMPLAINED = "supporter.complained", "Supporter complained (marked as spam)"
    ERASED = "supporter.erased", "Supporter erased (id only)"
    SIGNED = "action.signed", "Supporter signed an action"


class WebhookEndpoint(models.Model):
    name = models.CharField(max_length=200)
    url = models.URLField(
        "URL", max_length=500, help_text="Where Rally POSTs each event, signed (see docs/api.md)."
    )
    partner = models.ForeignKey(
        "crm.PartnerOrganisation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="A partner's endpoint hears only of the supporters who came from that partner.",
    )
    events = models.JSONField(default=list, blank=True)
    secret = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField("active", default=True)
    # Set when deliveries kept failing; staff resume the endpoint from its page.
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return self.name

    @property
    def is_paused(self):
        return self.paused_at is not None


class WebhookDeliveryQuerySet(models.QuerySet):
    def claimable(self, now=None):
        """Return the deliveries a worker may take now: pending and due, or stuck sending.

        Conditions on this table only, so a claim's UPDATE re-checks them on the row.
        """
        now = now or timezone.now()
        return self.filter(
            Q(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=WebhookDelivery.Status.SENDING, claimed_until__lt=now)
        )

    def due(self, now=None):
        """Return the claimable deliveries of active endpoints that are not paused."""
        return self.claimable(now).filter(
            endpoint__is_active=True, endpoint__paused_at__isnull=True
        )


class WebhookDelivery(models.Model):
    """One event for one endpoint, sent until the endpoint says 2xx or a day has passed.

    Holds no personal data: the body is built when sent, from the supporter as
    they are then (an erased supporter is named by id only).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=32, choices=Event.choices)
    # The idempotency key: the same for every attempt, one per event and endpoint.
    event_id = models.CharField(max_length=64)
    supporter_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="api_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="api_delivery_due"),
            models.Index(fields=["created_at"], name="api_delivery_created"),
        ]

    def __str__(self):
        return f"{self.get_event_display()} to {self.endpoint}: {self.get_status_display()}"


class WebhookCursor(models.Model):
    """How far the outbox has read the audit trail and consent records (one row)."""

    scanned_until = models.DateTimeField()

    class Meta:
        verbose_name = "webhook outbox cursor"

    def __str__(self):
        return f"Outbox read up to {self.scanned_until:%Y-%m-%d %H:%M:%S}"
