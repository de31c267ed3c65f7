"""What mailings adds to crm's segments (registered in MailingsConfig.ready()).

The engagement rules (opened_within_days, clicked_within_days, quiet_for_days),
answered from the mailing history; the unfinished mailings that use a segment, which refuse
its deletion and hear of its changes; and every mailing that uses a segment,
which the segment list names.
"""

import datetime

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from crm.extensions import SegmentUser
from mailings.engagement import engaged_since
from mailings.models import Mailing


def opened_within(days):
    """Return a Q on Supporter: opened any mailing in the last `days` days."""
    return engaged_since("opened", timezone.now() - datetime.timedelta(days=days))


def clicked_within(days):
    """Return a Q on Supporter: clicked a link in any mailing in the last `days` days."""
    return engaged_since("clicked", timezone.now() - datetime.timedelta(days=days))


# The ready-made re-permission segment every install has (migration mailings 0011).
QUIET_SEGMENT = "Not opened or clicked in 12 months"


def quiet_for(days):
    """Return a Q on Supporter: joined over `days` days ago, no open or click since.

    The re-permission segment ("not opened or clicked in 12 months" is 365):
    someone who joined last month has had no time to be quiet.
    """
    since = timezone.now() - datetime.timedelta(days=days)
    return (
        Q(created_at__lt=since) & ~engaged_since("opened", since) & ~engaged_since("clicked", since)
    )


def mailings_using(segment_ids):
    """Return a sentence for each unfinished mailing that includes or excludes these segments.

    Unfinished: draft, scheduled, sending or paused. A scheduled mailing
    resolves its audience when it starts, and sending re-checks the excluded
    segments batch by batch, so a change to the segment changes who gets it.
    """
    finished = (Mailing.Status.SENT, Mailing.Status.CANCELLED)
    lines = []
    for relation, verb in (("include_segments", "sends to"), ("exclude_segments", "leaves out")):
        links = (
            getattr(Mailing, relation)
            .through.objects.filter(segment_id__in=list(segment_ids))
            .exclude(mailing__status__in=finished)
            .select_related("mailing", "segment")
            .order_by("mailing__name", "mailing_id")
        )
        for link in links:
            mailing = link.mailing
            lines.append(
                f"Mailing “{mailing}” ({mailing.get_status_display().lower()}) "
                f"{verb} segment “{link.segment}”"
            )
    return lines


def mailings_by_segment(segment_ids):
    """Return {segment id: [SegmentUser]}: the mailings that include or exclude each segment.

    Newest mailing first, finished ones too; two queries whatever the number of segments.
    """
    found = []
    for relation, note in (("include_segments", ""), ("exclude_segments", ", leaves it out")):
        links = (
            getattr(Mailing, relation)
            .through.objects.filter(segment_id__in=list(segment_ids))
            .select_related("mailing")
        )
        found += [(link.segment_id, link.mailing, note) for link in links]
    found.sort(key=lambda item: (item[1].created_at, item[1].pk), reverse=True)
    users = {}
    for segment_id, mailing, note in found:
        users.setdefault(segment_id, []).append(
            SegmentUser(
                name=mailing.name,
                url=reverse("admin:mailings_mailing_change", args=[mailing.pk]),
                note=mailing.get_status_display().lower() + note,
            )
        )
    return users
