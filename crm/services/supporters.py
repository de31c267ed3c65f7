"""Creating and finding supporters, and revoking the links they were sent."""

from django.db import transaction
from django.utils import timezone

from crm.models import AuditEvent, Supporter
from crm.services.audit import audit_event_add


def supporter_create(*, actor=None, **fields) -> Supporter:
    """Create a supporter after full validation (duplicates, bad addresses, country)."""
    supporter = Supporter(**fields)
    supporter.email = (supporter.email or "").strip()
    supporter.full_clean()
    supporter.save()
    return supporter


def supporter_get(email):
    """Return the supporter with `email` (case and spaces aside), or None."""
    return Supporter.objects.with_email(email).first()


def supporter_revoke_links(*, supporter: Supporter, actor=None) -> Supporter:
    """Invalidate every preference and unsubscribe link this supporter was sent."""
    with transaction.atomic():
        Supporter.objects.filter(pk=supporter.pk).update(
            link_version=supporter.link_version + 1, updated_at=timezone.now()
        )
        audit_event_add(
            AuditEvent.Kind.LINKS_REVOKED, supporter=supporter, actor=actor, source="staff"
        )
    supporter.refresh_from_db()
    return supporter
