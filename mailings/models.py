from django.conf import settings
from django.db import models
from django.utils import timezone


class Mailing(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField("internal name", max_length=200)
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    interests = models.ManyToManyField(
        "crm.CampaignInterest",
        blank=True,
        related_name="mailings",
        help_text="Sent to supporters subscribed to any of these; unsubscribes apply to them.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("send_mailing", "Can send, schedule, pause and cancel mailings")]

    def __str__(self):
        return self.name
