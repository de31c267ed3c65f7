"""
Confirming: queue a previewed batch for a worker, apply its stored plan in one
transaction once the state it was made from is checked under locks, report
progress, and queue again imports whose worker died.
"""

import hashlib
import json
import logging
import zlib

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm import sql
from crm.exceptions import ImportFailed, ImportRefused
from crm.imports.bulk import _bulk_work, _chunks
from crm.imports.plan import ImportOptions, _preview_digest
from crm.imports.state import _look_up, _sql_fingerprint
from crm.imports.writers import _writer
from crm.models import AuditEvent, ImportBatch, PartnerOrganisation, Supporter, email_hasher
from crm.services import audit_event_add, consents_grant_bulk

logger = logging.getLogger(__name__)


def progress_key(batch_id):
    return f"crm:import-progress:{batch_id}"


def import_progress(*, batch_id) -> dict:
    """Return the last progress a running confirm reported: stage, done and total rows."""
    return cache.get(progress_key(batch_id)) or {}


def _reporter(batch_id):
    def report(stage, done, total):
        cache.set(progress_key(batch_id), {"stage": stage, "done": done, "total": total}, 3600)

    return report


def import_enqueue(*, batch: ImportBatch, actor=None) -> bool:
    """Queue `batch` for a worker to confirm; return False if it was not waiting.

    The claim is a conditional update, so confirming twice queues once.
    """
    from crm import tasks

    with transaction.atomic():
        claimed = ImportBatch.objects.filter(
            pk=batch.pk, status=ImportBatch.Status.PREVIEWED
        ).update(status=ImportBatch.Status.QUEUED, confirmed_by=actor)
        if claimed:
            _reporter(batch.pk)("queued", 0, batch.row_count)
            tasks.import_confirm.delay_on_commit(batch.pk, actor.pk if actor else None)
    return bool(claimed)


REFUSALS = {
    ImportBatch.Status.QUEUED: "This import is already waiting to run.",
    ImportBatch.Status.RUNNING: "This import is already running.",
    ImportBatch.Status.DONE: "This import was already confirmed; it was not applied again.",
    ImportBatch.Status.FAILED: "This import failed; upload the file again to retry.",
    ImportBatch.Status.REVERTED: "This import was reverted; upload the file again to redo it.",
    ImportBatch.Status.EXPIRED: "This preview expired; upload the file again.",
}


def import_confirm(*, batch_id: int, actor=None) -> ImportBatch:
    """Apply a previewed batch exactly as previewed, in one transaction.

    Claim the batch (a batch is applied at most once), check the stored file
    still has the previewed hash, lock and read again what the preview read
    and refuse if any of it changed, then write the stored plan. On any
    failure nothing is changed, the batch is marked failed and ImportFailed
    says why. If the process dies instead, import_recover() queues the batch
    again.
    """
    now = timezone.now()
    claimed = ImportBatch.objects.filter(
        pk=batch_id, status__in=[ImportBatch.Status.PREVIEWED, ImportBatch.Status.QUEUED]
    ).update(
        status=ImportBatch.Status.RUNNING,
        started_at=now,
        **({"confirmed_by": actor} if actor else {}),
    )
    batch = ImportBatch.objects.select_related("partner").get(pk=batch_id)
    if not claimed:
        raise ImportRefused(REFUSALS.get(batch.status, "This import cannot be confirmed."))
    actor = actor or batch.confirmed_by
    progress = _reporter(batch.pk)
    # This claim, and no later one (import_recover may have queued the batch again).
    mine = ImportBatch.objects.filter(
        pk=batch.pk, status=ImportBatch.Status.RUNNING, started_at=now
    )
    try:
        with _bulk_work(), transaction.atomic():
            # The batch's row stays locked until the import commits or rolls back,
            # which tells import_recover() that someone is applying it.
            if not mine.select_for_update().exists():
                raise ImportRefused("This import was restarted after an interruption.")
            counts = _confirm(batch, actor=actor, progress=progress)
    except ImportRefused:
        raise
    except ImportFailed as error:
        message = error.messages[0]
    except IntegrityError:
        # The database's message names the clashing address: never show or log it.
        logger.warning("Import batch %s failed on a database constraint", batch.pk)
        message = (
            "Someone in this file was added to Rally by someone else while the import ran, "
            "so nothing was imported. Upload the file again to see a fresh preview."
        )
    except Exception as error:
        logger.error("Import batch %s failed: %s", batch.pk, type(error).__name__)
        message = (
            f"The import failed ({type(error).__name__}) and nothing was changed. Try again; "
            "if it keeps failing, tell whoever looks after Rally."
        )
    else:
        progress("done", batch.row_count, batch.row_count)
        batch.refresh_from_db()
        logger.info("Import batch %s applied: %s", batch.pk, counts)
        return batch
    mine.update(
        status=ImportBatch.Status.FAILED,
        error=message,
        finished_at=timezone.now(),
        file_data=None,
        plan_data=None,
    )
    progress("failed", 0, batch.row_count)
    raise ImportFailed(message)


# A batch whose worker dies this many times is failed rather than queued again:
# an import that kills its worker (for memory, say) would otherwise loop.
MAX_INTERRUPTIONS = 3


def import_recover() -> list[int]:
    """Queue again each import whose worker stopped, or whose task was lost; return their ids.

    A worker killed mid-import (a crash, a deploy, the out-of-memory killer)
    leaves its batch "running" while the database rolls the import back. A
    live import holds its batch's row lock until it commits, so a running
    batch that can be locked has nobody applying it. Confirming it again
    checks, as ever, that nothing changed since the preview.
    Run periodically (Celery beat); safe at any time, any number of times.
    """
    from crm import tasks

    recovered = []
    running = ImportBatch.objects.filter(status=ImportBatch.Status.RUNNING)
    for batch_id in running.values_list("pk", flat=True):
        with transaction.atomic():
            batch = (
                running.select_for_update(skip_locked=True)
                .filter(pk=batch_id)
                .only("pk", "counts", "row_count", "confirmed_by_id")
                .first()
            )
            if batch is None:
                continue  # being applied right now
            interruptions = (batch.counts or {}).get("interruptions", 0) + 1
            if interruptions > MAX_INTERRUPTIONS:
                logger.error("Import batch %s stopped %s times; failed", batch.pk, interruptions)
                ImportBatch.objects.filter(pk=batch.pk).update(
                    status=ImportBatch.Status.FAILED,
                    error=(
                        f"The import stopped {interruptions} times before finishing (its worker "
                        "was stopped, perhaps for lack of memory), so nothing was imported. "
                        "Split the file into smaller files and import each."
                    ),
                    finished_at=timezone.now(),
                    file_data=None,
                    plan_data=None,
                )
                _reporter(batch.pk)("failed", 0, batch.row_count)
                continue
            ImportBatch.objects.filter(pk=batch.pk).update(
                status=ImportBatch.Status.QUEUED,
                started_at=None,
                counts={**(batch.counts or {}), "interruptions": interruptions},
            )
            _reporter(batch.pk)("queued", 0, batch.row_count)
            tasks.import_confirm.delay_on_commit(batch.pk, batch.confirmed_by_id)
            recovered.append(batch.pk)
    # A waiting batch's progress note is kept beside the broker's queue (in
    # Redis, for an hour). Without it, the queued task may have been lost with
    # the broker's data (Redis restarted empty): queue it again. A second task
    # is harmless, as only one can claim the batch.
    waiting = ImportBatch.objects.filter(status=ImportBatch.Status.QUEUED)
    for pk, rows, actor_id in waiting.values_list("pk", "row_count", "confirmed_by_id"):
        if not import_progress(batch_id=pk):
            _reporter(pk)("queued", 0, rows)
            tasks.import_confirm.delay_on_commit(pk, actor_id)
            recovered.append(pk)
    if recovered:
        logger.warning("Import batches %s were interrupted or lost; queued again", recovered)
    return recovered


def _confirm(batch, *, actor, progress):
    data = bytes(batch.file_data or b"")
    if hashlib.sha256(data).hexdigest() != batch.file_hash:
        raise ImportFailed(
            "The stored file is not the one that was previewed, so nothing was imported. "
            "Upload it again."
        )
    payload = bytes(batch.plan_data or b"")
    if not payload:
        raise ImportFailed(
            "This preview no longer holds its plan, so nothing was imported. Upload the file "
            "again to see a fresh preview."
        )
    options = ImportOptions.from_dict(batch.options)
    if sql.in_use():
        # Suppressions added mid-import wait until it commits, so no address
        # suppressed meanwhile is subscribed (webhooks simply retry later).
        sql.suppressions_lock()
    plan = json.loads(zlib.decompress(payload))
    hasher = email_hasher()
    plan["hashes"] = [hasher(key) for key in plan["keys"]]
    # Read, and lock, what the preview read: the same state gives the same
    # plan, so the stored one is applied as it stands.
    progress("checking", 0, batch.row_count)
    if sql.in_use():
        fingerprint = _sql_fingerprint(plan["keys"], plan["hashes"], with_updated=options.overwrite)
    else:
        state = _look_up(plan["keys"], plan["hashes"], with_updated=options.overwrite, lock=True)
        fingerprint = state.fingerprint()
    if _preview_digest(payload, fingerprint) != batch.preview_digest:
        raise ImportFailed(
            "Supporters in this file changed since the preview (someone unsubscribed, was "
            "edited, suppressed or added), so nothing was imported. Upload the file again to "
            "see a fresh preview."
        )
    now = timezone.now()
    written = _apply(plan, batch=batch, actor=actor, now=now, progress=progress)
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=ImportBatch.Status.DONE,
        counts={**batch.counts, **written},
        finished_at=timezone.now(),
        file_data=None,
        plan_data=None,
        error="",
    )
    if options.columns:
        # Offered first when this partner's next file comes (columns.guess_columns).
        PartnerOrganisation.objects.filter(pk=batch.partner_id).update(
            column_mapping={**batch.partner.column_mapping, **options.columns}
        )
    audit_event_add(
        AuditEvent.Kind.IMPORTED,
        actor=actor,
        source=f"import batch {batch.pk}",
        batch=batch.pk,
        partner=batch.partner.slug,
        **written,
    )
    return written


def _apply(plan, *, batch, actor, now, progress):
    """Write a stored plan (ImportPlan.payload): supporters, history, subscriptions, consent.

    Supporters and their history go through the writer; subscriptions and
    consent records through crm.services.consents_grant_bulk.
    """
    writer = _writer()
    creating, changing = plan["new"], plan["changed"]
    updating = [(pk, changes) for pk, changes, _, _ in changing if changes]
    subscribing = sum(len(entry[-1]) for entry in creating) + sum(
        len(entry[-1]) for entry in changing
    )
    total = len(creating) + len(updating) + subscribing
    done = 0
    history = {
        "now": now,
        "reason": f"partner import {batch.pk}"[:100],
        "actor_id": actor.pk if actor else None,
    }
    # (supporter id, interest id, partner id) for each subscription to create.
    grants = []

    fixed = {
        "source": Supporter.Source.PARTNER_IMPORT,
        "status": Supporter.Status.ACTIVE,
        "import_batch_id": batch.pk,
        "notes": "",
        "link_version": 1,
        "created_at": now,
        "updated_at": now,
    }
    hashes = plan["hashes"]
    for chunk in _chunks(creating):
        ids = writer.insert_supporters(
            [(entry[1], hashes[entry[0]], *entry[2:-1]) for entry in chunk], fixed=fixed
        )
        writer.write_history(ids, kind="+", **history)
        for pk, entry in zip(ids, chunk, strict=True):
            partner_id = entry[-2]
            grants.extend((pk, interest_id, partner_id) for interest_id in entry[-1])
        done += len(chunk)
        progress("writing", done, total)

    for chunk in _chunks(updating):
        writer.update_supporters(chunk, now=now)
        writer.write_history([pk for pk, _ in chunk], kind="~", **history)
        done += len(chunk)
        progress("writing", done, total)
    for pk, _, partner_id, interest_ids in changing:
        grants.extend((pk, interest_id, partner_id) for interest_id in interest_ids)
    # In supporter order, rows land in the indexes (and their checks find
    # their supporters) in order rather than all over the table.
    grants.sort()

    label = "" if actor else "partner import command"
    for chunk in _chunks(grants):
        consents_grant_bulk(
            grants=chunk, import_batch=batch, actor=actor, actor_label=label, now=now
        )
        done += len(chunk)
        progress("writing", done, total)
    return {
        "created": len(creating),
        "changed": len(updating),
        "subscribed": len(grants),
        "consent_records": len(grants),
    }
