"""
A large partner import runs on a worker's "imports" queue and the worker is
killed (kill -9) while it writes: the database is exactly as before the import.
A new worker finds the interrupted batch, runs it again from the stored file,
and every supporter, subscription and consent record exists once.
"""

import time

import pytest
from django.db.models import Count

from crm import imports
from crm.models import AuditEvent, ConsentRecord, ImportBatch, Subscription, Supporter
from tests.factories import SupporterFactory
from tests.integration.harness import wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

ROWS = 30_000


def snapshot():
    """What an import writes, counted."""
    return {
        "supporters": Supporter.objects.count(),
        "history": Supporter.history.count(),
        "subscriptions": Subscription.objects.count(),
        "consent records": ConsentRecord.objects.count(),
        "audit events": AuditEvent.objects.count(),
    }


def partner_file(rows):
    lines = ["Email,First name,Postcode"]
    lines += [f"signer{n}@example.org,Signer{n},SW1A {n % 10}AA" for n in range(rows)]
    return "\n".join(lines).encode()


def test_worker_killed_mid_import_leaves_nothing_and_the_import_runs_again(
    sink, broker, workers, chaos, interest, partner, membership_user
):
    existing = SupporterFactory(email="long.time@example.org", subscribed_to=[interest])
    before = snapshot()
    preview = imports.import_preview(
        data=partner_file(ROWS),
        file_name="protection-approaches.csv",
        partner=partner,
        interests=[interest],
        actor=membership_user,
    )
    worker = workers(sink, queues="celery,imports", LOG_LEVEL="INFO")  # the imports' own log
    worker.start()
    assert imports.import_enqueue(batch=preview.batch, actor=membership_user) is True

    # Kill it once it is writing supporters, before the transaction can commit.
    def writing_or_over():
        progress = imports.import_progress(batch_id=preview.batch.pk)
        return (
            progress.get("stage") == "writing" and progress["done"] < progress["total"]
        ) or progress.get("stage") in ("done", "failed")

    wait_until(writing_or_over, 120, worker)
    time.sleep(chaos.uniform(0, 0.05))
    worker.kill()
    progress = imports.import_progress(batch_id=preview.batch.pk)

    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    print(f"Killed at {progress}")
    assert batch.status == ImportBatch.Status.RUNNING, (
        f"the kill came after the import ended ({batch.status}: {batch.error})\n{worker.logs()}"
    )
    assert snapshot() == before  # the database is as before the import
    assert Supporter.objects.filter(import_batch=batch).exists() is False

    worker.start()
    wait_until(
        lambda: ImportBatch.objects.filter(pk=batch.pk, status__in=["done", "failed"]).exists(),
        120,
        worker,
    )

    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE, batch.error
    assert batch.counts["created"] == ROWS
    after = snapshot()
    assert after == {
        "supporters": before["supporters"] + ROWS,
        "history": before["history"] + ROWS,
        "subscriptions": before["subscriptions"] + ROWS,
        "consent records": before["consent records"] + ROWS,
        "audit events": before["audit events"] + 1,
    }
    twice = Supporter.objects.values("email").annotate(n=Count("id")).filter(n__gt=1)
    assert list(twice) == []
    assert Supporter.objects.filter(import_batch=batch).count() == ROWS
    assert ConsentRecord.objects.filter(import_batch=batch, interest=interest).count() == ROWS
    assert Supporter.objects.filter(pk=existing.pk).exists() is True
