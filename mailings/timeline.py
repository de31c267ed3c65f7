"""
What mailings adds to a supporter's page (crm.timeline): every mailing sent
to them, with what became of it, and when they last opened and clicked.
Registered in MailingsConfig.ready().
"""

from django.conf import settings
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.urls import reverse

from crm.timeline import Entry, Figure, when_text
from mailings.models import Delivery

# The mailings an open rate is counted over.
RECENT_MAILINGS = 10

# What a delivery's status says, before the mailing's name.
SENT_TEXT = {
    Delivery.Status.QUEUED: "Waiting to be sent",
    Delivery.Status.SENDING: "Being sent",
    Delivery.Status.SENT: "Sent",
    Delivery.Status.FAILED: "Could not be sent",
    Delivery.Status.UNKNOWN: "Perhaps sent (the email service never answered)",
    Delivery.Status.SKIPPED: "Not sent (no longer subscribed)",
    Delivery.Status.CANCELLED: "Not sent (the mailing was cancelled)",
}
# What the email service told us afterwards, in the order it happens.
MARKS = (
    ("delivered", "delivered_at"),
    ("opened", "opened_at"),
    ("clicked", "clicked_at"),
    ("bounced", "bounced_at"),
    ("rejected", "rejected_at"),
    ("marked as spam", "complained_at"),
    ("unsubscribed", "unsubscribed_at"),
)
DELIVERY_FIELDS = (
    "status",
    "sent_at",
    "created_at",
    "mailing_id",
    "deferred_at",
    "last_opened_at",
    "last_clicked_at",
    *(field for _, field in MARKS),
)


def mailings_sent(*, supporter, before, limit):
    """Every mailing sent (or being sent) to the supporter, newest first."""
    deliveries = Delivery.objects.filter(supporter=supporter).annotate(
        when=Coalesce("sent_at", "created_at")
    )
    if before is not None:
        deliveries = deliveries.filter(when__lt=before)
    deliveries = (
        deliveries.select_related("mailing")
        # A mailing's body is large and not shown here.
        .only(*DELIVERY_FIELDS, "mailing__name", "mailing__status")
        .order_by("-when", "-id")[:limit]
    )
    entries = []
    for delivery in deliveries:
        marks = []
        for word, field in MARKS:
            moment = getattr(delivery, field)
            if moment is not None:
                marks.append((word, when_text(moment)))
        if delivery.deferred_at and delivery.delivered_at is None:
            marks.append(("delayed", when_text(delivery.deferred_at)))
        if delivery.last_opened_at and delivery.last_opened_at != delivery.opened_at:
            marks.append(("opened again", when_text(delivery.last_opened_at)))
        if delivery.last_clicked_at and delivery.last_clicked_at != delivery.clicked_at:
            marks.append(("clicked again", when_text(delivery.last_clicked_at)))
        status = SENT_TEXT.get(delivery.status, delivery.get_status_display())
        entries.append(
            Entry(
                delivery.when,
                "Mailing",
                f"{status}: “{delivery.mailing.name}”",
                link=reverse("admin:mailings_mailing_report", args=[delivery.mailing_id]),
                link_text="Report",
                marks=tuple(marks),
            )
        )
    return entries


def engagement(*, supporter):
    """When the supporter last opened and clicked, and how many recent mailings they opened."""
    deliveries = Delivery.objects.filter(supporter=supporter)
    last = deliveries.aggregate(opened=Max("last_opened_at"), clicked=Max("last_clicked_at"))
    recent = list(
        deliveries.filter(status=Delivery.Status.SENT)
        .order_by("-sent_at", "-id")
        .values_list("opened_at", flat=True)[:RECENT_MAILINGS]
    )
    untracked = (
        ""
        if settings.RALLY_TRACK_OPENS
        else " Open tracking is switched off, so opens are not being recorded."
    )
    if recent:
        opened = sum(1 for moment in recent if moment is not None)
        rate = Figure(
            f"Opened, last {RECENT_MAILINGS} mailings",
            f"{round(100 * opened / len(recent))}%",
            f"Opened {opened} of the last {len(recent)} mailings sent to them.{untracked}",
        )
    else:
        rate = Figure(f"Opened, last {RECENT_MAILINGS} mailings", "—", "Nothing sent to them yet.")
    return [
        Figure(
            "Last opened",
            when_text(last["opened"], time=False) or "never",
            when_text(last["opened"]),
        ),
        Figure(
            "Last clicked",
            when_text(last["clicked"], time=False) or "never",
            when_text(last["clicked"]),
        ),
        rate,
    ]
