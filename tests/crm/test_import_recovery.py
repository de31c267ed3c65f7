"""An import whose worker died mid-import is queued again and applied once; a live one is not."""

import contextlib
import threading

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from crm import imports, tasks
from crm.imports import confirm
from crm.models import ConsentRecord, ImportBatch, Supporter

LIST = "Email,First name\nann@example.org,Ann\nbo@example.org,Bo\n"


def died_mid_import(batch):
    """Leave `batch` as a worker killed mid-import does: claimed, running, nothing written."""
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=ImportBatch.Status.RUNNING, started_at=timezone.now()
    )


@pytest.mark.django_db
def test_interrupted_import_is_queued_again_and_applied_once(
    partner_list, interest, membership_user, django_capture_on_commit_callbacks
):
    preview = partner_list(LIST, interests=[interest], actor=membership_user)
    imports.import_enqueue(batch=preview.batch, actor=membership_user)
    died_mid_import(preview.batch)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert imports.import_recover() == [preview.batch.pk]
    assert len(queued) == 1
    assert ImportBatch.objects.get(pk=preview.batch.pk).status == ImportBatch.Status.QUEUED
    assert imports.import_progress(batch_id=preview.batch.pk)["stage"] == "queued"
    tasks.import_confirm(preview.batch.pk, membership_user.pk)  # what the queued task runs

    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert batch.status == ImportBatch.Status.DONE
    assert batch.confirmed_by == membership_user
    assert sorted(Supporter.objects.values_list("email", flat=True)) == [
        "ann@example.org",
        "bo@example.org",
    ]
    assert ConsentRecord.objects.filter(import_batch=batch).count() == 2
    assert imports.import_recover() == []


@pytest.mark.django_db
def test_waiting_import_whose_task_was_lost_is_queued_again(
    partner_list, interest, membership_user, fresh_cache, django_capture_on_commit_callbacks
):
    """Redis restarted empty: the queued task went with the progress note kept beside it."""
    preview = partner_list(LIST, interests=[interest], actor=membership_user)
    with django_capture_on_commit_callbacks(execute=False):
        imports.import_enqueue(batch=preview.batch, actor=membership_user)
    assert imports.import_recover() == []  # still waiting in the queue: left alone

    cache.clear()
    with django_capture_on_commit_callbacks(execute=False):
        assert imports.import_recover() == [preview.batch.pk]
    assert imports.import_progress(batch_id=preview.batch.pk)["stage"] == "queued"
    assert imports.import_recover() == []
    tasks.import_confirm(preview.batch.pk, membership_user.pk)  # what the queued task runs

    assert ImportBatch.objects.get(pk=preview.batch.pk).status == ImportBatch.Status.DONE
    assert Supporter.objects.count() == 2


@pytest.mark.django_db
def test_import_that_keeps_stopping_its_worker_fails_with_advice(
    partner_list, interest, django_capture_on_commit_callbacks
):
    """An import that kills its worker every time (memory, say) must not loop for ever."""
    preview = partner_list(LIST, interests=[interest])
    for _ in range(imports.MAX_INTERRUPTIONS):
        died_mid_import(preview.batch)
        with django_capture_on_commit_callbacks(execute=False) as queued:
            assert imports.import_recover() == [preview.batch.pk]
        assert len(queued) == 1
    died_mid_import(preview.batch)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert imports.import_recover() == []

    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert queued == []
    assert batch.status == ImportBatch.Status.FAILED
    assert "stopped 4 times" in batch.error
    assert "smaller files" in batch.error
    assert batch.file_data is None
    assert imports.import_progress(batch_id=batch.pk)["stage"] == "failed"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_import_being_applied_is_left_alone(partner_list, interest):
    """A running import holds its batch's row lock; the recovery skips it."""
    preview = partner_list(LIST, interests=[interest])
    died_mid_import(preview.batch)
    locked, release = threading.Event(), threading.Event()

    def applying():
        try:
            with transaction.atomic():
                ImportBatch.objects.select_for_update().filter(pk=preview.batch.pk).exists()
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=applying)
    thread.start()
    try:
        assert locked.wait(10)
        assert imports.import_recover() == []
        assert ImportBatch.objects.get(pk=preview.batch.pk).status == ImportBatch.Status.RUNNING
    finally:
        release.set()
        thread.join()


@pytest.mark.django_db
def test_confirm_that_was_taken_over_backs_off(partner_list, interest, monkeypatch):
    """A confirm stalled between its claim and its transaction finds the batch queued again."""
    preview = partner_list(LIST, interests=[interest])
    real_bulk_work = confirm._bulk_work

    @contextlib.contextmanager
    def recovered_meanwhile():
        ImportBatch.objects.filter(pk=preview.batch.pk).update(
            status=ImportBatch.Status.QUEUED, started_at=None
        )
        with real_bulk_work():
            yield

    monkeypatch.setattr(confirm, "_bulk_work", recovered_meanwhile)

    with pytest.raises(imports.ImportRefused, match="restarted after an interruption"):
        imports.import_confirm(batch_id=preview.batch.pk)

    # The queued task will apply it; this confirm neither imported nor failed it.
    assert ImportBatch.objects.get(pk=preview.batch.pk).status == ImportBatch.Status.QUEUED
    assert Supporter.objects.count() == 0
