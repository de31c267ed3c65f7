"""
Previews: read and plan a file and keep the plan as a batch waiting for
confirmation; plan a stored batch's file again; forget previews nobody
confirmed, or that a newer preview of the same upload replaced.
"""

import datetime
import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm.exceptions import ImportRefused
from crm.imports.bulk import _bulk_work
from crm.imports.files import Table, read_table
from crm.imports.plan import ImportOptions, ImportPlan, _preview_digest, import_plan
from crm.models import ImportBatch, PartnerOrganisation


@dataclass
class ImportPreview:
    """A planned import: the file's table, the plan, and the batch that can confirm it."""

    table: Table
    plan: ImportPlan
    batch: ImportBatch | None
    duplicate_of: ImportBatch | None = None

    @property
    def confirmable(self):
        return self.batch is not None


def import_preview(
    *,
    data: bytes,
    file_name: str,
    partner: PartnerOrganisation,
    interests=(),
    options: ImportOptions | None = None,
    actor=None,
    keep: bool = True,
) -> ImportPreview:
    """Plan the import of `data` and keep it as a batch waiting for confirmation.

    Raise ImportRejected when the whole file is unusable. When rows have
    errors (and the options do not skip them), or `keep` is false, return
    the plan without a batch: nothing is stored.
    """
    options = options or ImportOptions()
    interests = list(interests)
    with _bulk_work():
        table = read_table(
            data=data,
            file_name=file_name,
            file_format=options.file_format,
            encoding=options.encoding,
        )
        options.file_format = table.file_format
        plan = import_plan(table=table, partner=partner, interests=interests, options=options)
        # The batch keeps the whole mapping used, so its confirm and any replan
        # read the file's columns as this preview did.
        options.columns = plan.mapping
        file_hash = hashlib.sha256(data).hexdigest()
        duplicate_of = (
            ImportBatch.objects.filter(
                file_hash=file_hash, partner=partner, status=ImportBatch.Status.DONE
            )
            .order_by("-finished_at")
            .first()
        )
        batch = None
        if keep and (not plan.has_errors or options.skip_invalid):
            # The confirm step applies this stored plan, not a new one, after
            # checking under locks that the state it was made from still holds.
            payload = plan.payload()
            with transaction.atomic():
                batch = ImportBatch.objects.create(
                    partner=partner,
                    file_name=file_name[:255],
                    file_hash=file_hash,
                    file_data=data,
                    plan_data=payload,
                    options=options.as_dict(),
                    status=ImportBatch.Status.PREVIEWED,
                    row_count=len(table.rows),
                    counts=plan.counts,
                    preview_digest=_preview_digest(payload, plan.state.fingerprint()),
                    report=plan.report(),
                    created_by=actor,
                )
                batch.interests.set(interests)
        plan.state = None  # read only for the digest; the preview page does not need it
    return ImportPreview(table=table, plan=plan, batch=batch, duplicate_of=duplicate_of)


def import_replan(*, batch: ImportBatch) -> ImportPreview:
    """Plan `batch`'s stored file again, as it would import now (for previews and reports)."""
    if not batch.file_data:
        raise ImportRefused("This batch no longer holds its file.")
    options = ImportOptions.from_dict(batch.options)
    with _bulk_work():
        table = read_table(
            data=bytes(batch.file_data),
            file_name=batch.file_name,
            file_format=options.file_format,
            encoding=options.encoding,
        )
        plan = import_plan(
            table=table,
            partner=batch.partner,
            interests=list(batch.interests.all()),
            options=options,
        )
    return ImportPreview(table=table, plan=plan, batch=batch)


def import_discard_preview(*, batch_id: int) -> bool:
    """Forget a preview a newer one of the same upload replaced, as if it had expired.

    Return False when it was not waiting any more (confirmed, or already gone).
    """
    return bool(
        ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.PREVIEWED).update(
            status=ImportBatch.Status.EXPIRED, file_data=None, plan_data=None
        )
    )


def import_expire_previews(*, older_than: datetime.timedelta | None = None) -> int:
    """Forget the files of previews nobody confirmed; return how many expired."""
    if older_than is None:
        older_than = datetime.timedelta(hours=settings.RALLY_IMPORT_PREVIEW_HOURS)
    return ImportBatch.objects.filter(
        status=ImportBatch.Status.PREVIEWED, created_at__lt=timezone.now() - older_than
    ).update(status=ImportBatch.Status.EXPIRED, file_data=None, plan_data=None)
