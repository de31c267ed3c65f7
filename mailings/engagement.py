"""Engagement questions that CRM segment rules ask of the mailing history."""

from django.db.models import Q


def engaged_since(kind, since):
    """Return a Q on Supporter: opened (or clicked) any mailing since `since`.

    Until mailings record tracking events, nobody has engaged.
    """
    return Q(pk__in=[])
