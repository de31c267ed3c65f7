"""The audit trail's one writer for the CRM's services."""

from crm.models import AuditEvent


def audit_event_add(kind, *, supporter=None, actor=None, source="", **detail) -> AuditEvent:
    """Record that `kind` happened (to `supporter`, by `actor`), with `detail` as its data."""
    return AuditEvent.objects.create(
        kind=kind, supporter=supporter, actor=actor, source=source, detail=detail
    )
