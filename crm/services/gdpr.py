"""A supporter's rights of access and erasure (GDPR): their data export, and erasure.

Other apps add what they hold about a supporter to both through
crm.extensions (data_exports, erasures), registered in their AppConfig.ready().
"""

import json

from django.db import transaction

from crm import extensions
from crm.models import (
    AuditEvent,
    ConsentRecord,
    SegmentMembership,
    Subscription,
    Supporter,
    Suppression,
)
from crm.services.audit import audit_event_add
from crm.services.consent import suppression_add


def supporter_export_data(*, supporter: Supporter, actor=None, source: str = "staff") -> dict:
    """Return everything Rally holds about `supporter`, as JSON-ready data (GDPR access)."""
    data = {
        "supporter": {
            "id": supporter.pk,
            "email": supporter.email,
            "first_name": supporter.first_name,
            "last_name": supporter.last_name,
            "postcode": supporter.postcode,
            "country": str(supporter.country),
            "phone": supporter.phone,
            "organisation": supporter.organisation,
            "source": supporter.source,
            "partner": supporter.partner.name if supporter.partner else None,
            "status": supporter.status,
            "tags": [tag.name for tag in supporter.tags.all()],
            "notes": supporter.notes,
            "created_at": supporter.created_at.isoformat(),
            "updated_at": supporter.updated_at.isoformat(),
        },
        "subscriptions": [
            {
                "interest": sub.interest.name,
                "status": sub.status,
                "subscribed_at": sub.subscribed_at and sub.subscribed_at.isoformat(),
                "unsubscribed_at": sub.unsubscribed_at and sub.unsubscribed_at.isoformat(),
            }
            for sub in supporter.subscriptions.select_related("interest")
        ],
        "consent_history": [
            {
                "when": record.created_at.isoformat(),
                "interest": record.interest.name if record.interest else "all email",
                "action": record.action,
                "method": record.method,
                "lawful_basis": record.lawful_basis,
                "wording": record.wording,
                "wording_version": record.wording_version,
                "partner": record.partner.name if record.partner else None,
                "ip_address": record.ip_address,
            }
            for record in supporter.consent_records.select_related("interest", "partner")
        ],
        "segments": list(supporter.segment_memberships.values_list("segment__name", flat=True)),
        "changes": [
            {
                "when": entry.history_date.isoformat(),
                "type": entry.get_history_type_display(),
            }
            for entry in supporter.history.all()
        ],
    }
    for export in extensions.data_exports:
        data.update(export(supporter=supporter))
    audit_event_add(AuditEvent.Kind.DATA_EXPORTED, supporter=supporter, actor=actor, source=source)
    return data


def supporter_erase(*, supporter: Supporter, actor=None) -> Supporter:
    """Erase a supporter's personal data at their request (GDPR right to erasure).

    Anonymise the row (it stays, so mailing counts stay right), delete consent
    details, change history, subscriptions and memberships, and suppress the
    address so it is never emailed or added again. Other apps erase what they
    hold in the same transaction (crm.extensions.erasures).
    """
    with transaction.atomic():
        supporter = Supporter.objects.select_for_update().get(pk=supporter.pk)
        if supporter.status == Supporter.Status.ERASED:
            return supporter
        suppression_add(hashed=supporter.email_hash, reason=Suppression.Reason.ERASURE, actor=actor)
        for erase in extensions.erasures:
            erase(supporter=supporter)
        ConsentRecord.objects.filter(supporter=supporter)._erase()
        Subscription.objects.filter(supporter=supporter).delete()
        SegmentMembership.objects.filter(supporter=supporter).delete()
        supporter.tags.clear()
        # Earlier audit events name the supporter by id only; keep them.
        supporter.email = f"erased-{supporter.pk}@erased.invalid"
        supporter.first_name = supporter.last_name = ""
        supporter.postcode = supporter.phone = supporter.organisation = supporter.notes = ""
        supporter.status = Supporter.Status.ERASED
        supporter.link_version += 1
        supporter.save_without_historical_record()
        supporter.history.all().delete()
        _admin_log_erase(supporter)
        audit_event_add(AuditEvent.Kind.ERASED, supporter=supporter, actor=actor, source="staff")
    return supporter


def _admin_log_erase(supporter):
    """Anonymise the admin's log of changes to `supporter` (who changed it and when stay).

    Django's admin log names the object as it was shown (“Alice Smith
    <alice@…>”) and its messages may name inline rows; keep only which fields
    changed, which holds no personal data.
    """
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Supporter), object_id=str(supporter.pk)
    )
    for entry in entries.only("change_message"):
        entry.object_repr = f"Supporter #{supporter.pk} (erased)"
        entry.change_message = _fields_only(entry.change_message)
        entry.save(update_fields=["object_repr", "change_message"])


def _fields_only(change_message):
    """Return an admin log message keeping only the names of the fields changed."""
    try:
        parts = json.loads(change_message or "[]")
    except ValueError:
        return ""  # free text written by hand: it may say anything
    if not isinstance(parts, list):
        return ""
    kept = []
    for part in parts:
        for action in ("added", "changed", "deleted"):
            detail = part.get(action) if isinstance(part, dict) else None
            # A detail naming an "object" is about an inline row, shown as it read.
            if not isinstance(detail, dict) or "object" in detail:
                continue
            fields = detail.get("fields")
            if action == "changed" and isinstance(fields, list):
                kept.append({action: {"fields": [str(field) for field in fields]}})
            else:
                kept.append({action: {}})
    return json.dumps(kept)
