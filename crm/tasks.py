"""Celery entry points for the CRM: thin, taking ids, safe to repeat."""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from crm import imports
from crm.services.segments import segment_sizes_refresh

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def import_confirm(batch_id, actor_id=None):
    """Apply a queued partner import. A repeat finds the batch claimed and does nothing."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        imports.import_confirm(batch_id=batch_id, actor=actor)
    except imports.ImportRefused as refusal:
        logger.info("Import batch %s not run: %s", batch_id, refusal.messages[0])
    except imports.ImportFailed:
        # Already recorded on the batch, which the admin shows; retrying the
        # same plan would fail the same way.
        logger.info("Import batch %s failed; see the batch", batch_id)


@shared_task
def expire_import_previews():
    return imports.import_expire_previews()


@shared_task(ignore_result=True)
def recover_imports():
    """Queue again imports whose worker died mid-import (run by Celery beat)."""
    imports.import_recover()


@shared_task(ignore_result=True)
def count_segment_sizes():
    """Count every segment's members for the segment list (run by Celery beat)."""
    segment_sizes_refresh()
