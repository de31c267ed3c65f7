"""
Writes to the CRM. Views, admin actions, imports, commands and tasks all
change supporters, consent and suppression through these functions, so every
change writes its consent record and audit event in the same transaction.

    supporters.py  supporter_create, supporter_get, supporter_revoke_links
    consent.py     consent_grant, supporter_unsubscribe(_from_mailing), suppression_add/_remove,
                   supporter_mark_undeliverable; the staff bulk actions
                   supporters_subscribe, supporters_unsubscribe; an import's grants:
                   consents_grant_bulk; its revert: consents_withdraw_bulk,
                   supporters_delete_unused_import
    gdpr.py        supporter_export_data, supporter_erase
    segments.py    segment_save, segments_delete, segment_add_members, segment_remove_members
    partner_consent.py  partner_consent_grant (an opt-in to hear from a partner),
                   partner_optouts_apply (a partner's opt-out file, with its receipt)
    audit.py       audit_event_add, the audit trail's writer for all of the above,
                   and for imports and exports

Rally's code writes Subscription, ConsentRecord, Suppression and AuditEvent
only here (crm/demo.py's made-up history aside), and only code here runs
crm.sql's statements that write them; tests/test_consent_writes.py checks both.

Import from here (`from crm import services`; `from crm.services import x`).
"""

from crm.exceptions import ConsentRefused, SegmentInUse
from crm.services.audit import audit_event_add
from crm.services.consent import (
    BULK_BATCH_SIZE,
    UNDELIVERABLE_RANK,
    UNMAILABLE_STATUSES,
    BulkSubscription,
    consent_grant,
    consents_grant_bulk,
    consents_withdraw_bulk,
    supporter_mark_undeliverable,
    supporter_unsubscribe,
    supporter_unsubscribe_from_mailing,
    supporters_delete_unused_import,
    supporters_subscribe,
    supporters_unsubscribe,
    suppression_add,
    suppression_remove,
)
from crm.services.gdpr import supporter_erase, supporter_export_data
from crm.services.partner_consent import partner_consent_grant, partner_optouts_apply
from crm.services.segments import (
    segment_add_members,
    segment_remove_members,
    segment_save,
    segments_delete,
)
from crm.services.supporters import supporter_create, supporter_get, supporter_revoke_links

__all__ = [
    "BULK_BATCH_SIZE",
    "UNDELIVERABLE_RANK",
    "UNMAILABLE_STATUSES",
    "BulkSubscription",
    "ConsentRefused",
    "SegmentInUse",
    "audit_event_add",
    "consent_grant",
    "consents_grant_bulk",
    "consents_withdraw_bulk",
    "partner_consent_grant",
    "partner_optouts_apply",
    "segment_add_members",
    "segment_remove_members",
    "segment_save",
    "segments_delete",
    "supporter_create",
    "supporter_erase",
    "supporter_export_data",
    "supporter_get",
    "supporter_mark_undeliverable",
    "supporter_revoke_links",
    "supporter_unsubscribe",
    "supporter_unsubscribe_from_mailing",
    "supporters_delete_unused_import",
    "supporters_subscribe",
    "supporters_unsubscribe",
    "suppression_add",
    "suppression_remove",
]
