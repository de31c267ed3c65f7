"""Saving and deleting segments, the members of static segments, and segment sizes."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from crm.exceptions import SegmentInUse, SegmentRuleError
from crm.models import AuditEvent, Segment, SegmentMembership
from crm.segments import mailings_using
from crm.services.audit import audit_event_add


def _member_count(segment):
    try:
        return segment.supporters().count()
    except SegmentRuleError:
        return None


def segment_size_refresh(*, segment: Segment) -> int | None:
    """Count `segment`'s members now and keep the count on it (Segment.size); return it.

    A segment whose rules cannot be evaluated gets no size (None), counted now,
    so lists can say it needs fixing rather than show an old number.
    """
    size = _member_count(segment)
    segment.size, segment.size_counted_at = size, timezone.now()
    # update(), not save(): counting is not an edit, so updated_at stays as it is.
    Segment.objects.filter(pk=segment.pk).update(
        size=segment.size, size_counted_at=segment.size_counted_at
    )
    return size


def segment_sizes_refresh() -> int:
    """Count every segment's members, one count each (run by Celery beat); return how many."""
    segments = list(Segment.objects.only("pk", "kind", "rules"))
    for segment in segments:
        segment_size_refresh(segment=segment)
    return len(segments)


def segment_save(*, segment: Segment, actor=None) -> Segment:
    """Save `segment`, and count its members; if its definition changed, record who changed it.

    The audit event names the segment's size before and after the change.

    Mailings that include or exclude the segment move with it, so their pages
    show the change (crm.segments.changes_since).
    """
    with transaction.atomic():
        before = None
        if segment.pk is not None:
            before = (
                Segment.objects.select_for_update()
                .filter(pk=segment.pk)
                .values("kind", "rules")
                .first()
            )
        elif segment.created_by_id is None:
            segment.created_by = actor
        changed = before is not None and before != {"kind": segment.kind, "rules": segment.rules}
        if changed:
            members_before = _member_count(Segment(pk=segment.pk, **before))
        segment.save()
        size = segment_size_refresh(segment=segment)
        if changed:
            audit_event_add(
                AuditEvent.Kind.SEGMENT_CHANGED,
                actor=actor,
                source="staff",
                segment=segment.pk,
                name=segment.name,
                segment_kind_before=before["kind"],
                rules_before=before["rules"],
                segment_kind=segment.kind,
                rules=segment.rules,
                members_before=members_before,
                members=size,
            )
    return segment


def segments_delete(*, segments, actor=None) -> int:
    """Delete `segments`; return how many. Refuse (SegmentInUse) if an unfinished mailing uses one.

    Deleting a segment a draft or scheduled mailing includes or excludes would
    silently widen or narrow who receives it.
    """
    with transaction.atomic():
        # Locked, so a segment cannot be changed while it is being deleted.
        ids = list(
            Segment.objects.select_for_update()
            .filter(pk__in=[segment.pk for segment in segments])
            .values_list("pk", flat=True)
        )
        in_use = mailings_using(ids)
        if in_use:
            raise SegmentInUse(
                "A segment that a mailing still to be sent uses cannot be deleted: "
                + "; ".join(in_use)
                + ". Remove it from the mailing, or cancel the mailing, first."
            )
        Segment.objects.filter(pk__in=ids).delete()
    return len(ids)


def segment_add_members(*, segment: Segment, supporters, actor=None) -> int:
    """Add `supporters` to a static segment in one statement; return how many were new."""
    if segment.kind != Segment.Kind.STATIC:
        raise ValidationError("Only static segments have members added by hand.")
    with transaction.atomic():
        existing = SegmentMembership.objects.filter(segment=segment).values("supporter_id")
        ids = list(supporters.exclude(pk__in=existing).values_list("pk", flat=True))
        SegmentMembership.objects.bulk_create(
            [SegmentMembership(segment=segment, supporter_id=pk, added_by=actor) for pk in ids],
            ignore_conflicts=True,
        )
        audit_event_add(
            AuditEvent.Kind.SEGMENT_ADDED,
            actor=actor,
            source="staff",
            segment=segment.pk,
            count=len(ids),
        )
        segment_size_refresh(segment=segment)
    return len(ids)


def segment_remove_members(*, segment: Segment, supporters, actor=None) -> int:
    """Remove `supporters` from a static segment; return how many were members."""
    with transaction.atomic():
        removed, _ = SegmentMembership.objects.filter(
            segment=segment, supporter__in=supporters.values("pk")
        ).delete()
        audit_event_add(
            AuditEvent.Kind.SEGMENT_REMOVED,
            actor=actor,
            source="staff",
            segment=segment.pk,
            count=removed,
        )
        segment_size_refresh(segment=segment)
    return removed
