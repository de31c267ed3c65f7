"""
Reverting a completed batch: undo what it created that nothing has touched since.
"""

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from crm.exceptions import ImportRefused
from crm.imports.bulk import _chunks
from crm.models import AuditEvent, ConsentRecord, ImportBatch, Subscription, Supporter
from crm.services.audit import audit_event_add
from crm.services.consent import consents_withdraw_bulk, supporters_delete_unused_import


def import_revert(*, batch: ImportBatch, actor=None) -> dict:
    """Undo what `batch` created that nothing has touched since; return what was undone.

    Supporters the batch created and nobody has touched since are deleted
    with their consent records (those were the batch's own grants, which
    nothing relied on): we should not keep people a partner shared by
    mistake (crm.services.supporters_delete_unused_import says why). For
    everyone else, each subscription the batch created is withdrawn if it is
    still as the batch left it (crm.services.consents_withdraw_bulk): a
    "withdrawn" consent record naming the batch is appended, so the consent
    history shows both the grant and its reversal. Field values the batch
    filled in on existing supporters are kept.
    """
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status != ImportBatch.Status.DONE:
            raise ImportRefused(
                f"Only a completed import can be reverted; this one is "
                f"“{batch.get_status_display()}”."
            )
        grants = list(
            ConsentRecord.objects.filter(
                import_batch=batch, action=ConsentRecord.Action.GRANTED
            ).values_list("supporter_id", "interest_id", "created_at")
        )
        created = set(Supporter.objects.filter(import_batch=batch).values_list("pk", flat=True))
        involved = sorted(created | {supporter_id for supporter_id, _, _ in grants})
        for chunk in _chunks(involved):
            list(
                Supporter.objects.filter(pk__in=chunk)
                .order_by("pk")
                .select_for_update()
                .values_list("pk")
            )
        touched = _touched_supporters(created, batch)
        deleting = created - touched

        # A grant is still the batch's if it is the latest record for its topic.
        latest = {}
        for chunk in _chunks(involved):
            for supporter_id, interest_id, when in (
                ConsentRecord.objects.filter(supporter_id__in=chunk)
                .values("supporter_id", "interest_id")
                .annotate(latest=Max("created_at"))
                .values_list("supporter_id", "interest_id", "latest")
            ):
                latest[(supporter_id, interest_id)] = when
        candidates = {
            (supporter_id, interest_id): when
            for supporter_id, interest_id, when in grants
            if supporter_id not in deleting and latest.get((supporter_id, interest_id)) == when
        }
        withdraw = []
        for chunk in _chunks(candidates):
            supporter_ids = {supporter_id for supporter_id, _ in chunk}
            for pk, supporter_id, interest_id, status, subscribed_at in Subscription.objects.filter(
                supporter_id__in=supporter_ids
            ).values_list("pk", "supporter_id", "interest_id", "status", "subscribed_at"):
                when = candidates.get((supporter_id, interest_id))
                if (
                    when is not None
                    and status == Subscription.Status.SUBSCRIBED
                    and subscribed_at == when
                ):
                    withdraw.append((pk, supporter_id, interest_id))

        now = timezone.now()
        consents_withdraw_bulk(
            withdrawals=withdraw,
            method=ConsentRecord.Method.PARTNER_IMPORT,
            lawful_basis=batch.partner.lawful_basis,
            partner=batch.partner,
            import_batch=batch,
            actor=actor,
            actor_label=f"import {batch.pk} reverted",
            now=now,
        )
        supporters_delete_unused_import(supporter_ids=deleting)

        undone = {
            "deleted_supporters": len(deleting),
            "kept_supporters": len(touched),
            "withdrawn_subscriptions": len(withdraw),
            "kept_subscriptions": len(grants)
            - len(withdraw)
            - sum(1 for supporter_id, _, _ in grants if supporter_id in deleting),
        }
        batch.status = ImportBatch.Status.REVERTED
        batch.reverted_at = now
        batch.reverted_by = actor
        batch.counts = {**batch.counts, "reverted": undone}
        batch.save(update_fields=["status", "reverted_at", "reverted_by", "counts"])
        audit_event_add(
            AuditEvent.Kind.IMPORT_REVERTED,
            actor=actor,
            source=f"import batch {batch.pk}",
            **{"batch": batch.pk, "partner": batch.partner.slug, **undone},
        )
    return undone


def _touched_supporters(ids, batch):
    """Return which of `ids` (created by `batch`) anything else has changed or used since."""
    touched = set()
    finished = batch.finished_at
    history = Supporter.history.model
    for chunk in _chunks(sorted(ids)):
        touched.update(
            Supporter.objects.filter(pk__in=chunk)
            .exclude(status=Supporter.Status.ACTIVE, updated_at__lte=finished)
            .values_list("pk", flat=True)
        )
        touched.update(
            ConsentRecord.objects.filter(supporter_id__in=chunk)
            .exclude(import_batch=batch, action=ConsentRecord.Action.GRANTED)
            .values_list("supporter_id", flat=True)
        )
        touched.update(
            history.objects.filter(id__in=chunk, history_date__gt=finished).values_list(
                "id", flat=True
            )
        )
        touched.update(
            Supporter.tags.through.objects.filter(supporter_id__in=chunk).values_list(
                "supporter_id", flat=True
            )
        )
        # Anything else that points at a supporter (segment memberships, audit
        # events, and whatever mailings keep: deliveries, tracking) counts as use.
        for relation in Supporter._meta.related_objects:
            model = relation.related_model
            if model in (Subscription, ConsentRecord) or relation.many_to_many:
                continue
            touched.update(
                model._base_manager.filter(**{f"{relation.field.name}__in": chunk}).values_list(
                    relation.field.attname, flat=True
                )
            )
    return touched
