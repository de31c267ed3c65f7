"""Engagement questions that CRM segment rules ask of the mailing history."""

from django.db.models import Exists, OuterRef, Q

LATEST = {"opened": "last_opened_at", "clicked": "last_clicked_at"}


def engaged_since(kind, since):
    """Return a Q on Supporter: opened (or clicked) any mailing at or after `since`.

    One semi-join on the deliveries' latest open or click time, evaluated by the
    database. Opens are approximate: see the mailing report's caveat.
    """
    from mailings.models import Delivery

    field = LATEST[kind]
    return Q(Exists(Delivery.objects.filter(supporter=OuterRef("pk"), **{f"{field}__gte": since})))
