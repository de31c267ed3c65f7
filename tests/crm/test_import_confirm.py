"""The confirm step applies exactly what was previewed, once, wholly or not at all."""

import datetime

import pytest
from django.utils import timezone

from crm import imports
from crm.imports import ImportFailed, ImportRefused, confirm
from crm.models import (
    AuditEvent,
    ConsentRecord,
    ImportBatch,
    Subscription,
    Supporter,
)
from crm.services import supporter_unsubscribe
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db

LIST = "Email,First name\nann@example.org,Ann\nbo@example.org,Bo\nalice@example.org,Alice\n"


def database_state():
    return (
        sorted(Supporter.objects.values_list("email", "first_name", "status", "updated_at")),
        sorted(Subscription.objects.values_list("supporter_id", "interest_id", "status")),
        ConsentRecord.objects.count(),
    )


def test_confirm_applies_the_preview_and_records_the_batch(
    partner_list, interest, supporter, membership_user
):
    preview = partner_list(LIST, interests=[interest], actor=membership_user)
    batch = preview.batch
    assert batch.status == ImportBatch.Status.PREVIEWED
    assert Supporter.objects.count() == 1
    batch = imports.import_confirm(batch_id=batch.pk, actor=membership_user)
    assert batch.status == ImportBatch.Status.DONE
    expected = {"new": 2, "unchanged": 1, "created": 2, "subscribed": 2, "consent_records": 2}
    assert {key: batch.counts[key] for key in expected} == expected
    assert batch.file_data is None
    assert batch.confirmed_by == membership_user
    assert Supporter.objects.count() == 3
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.IMPORTED)
    assert event.actor == membership_user
    assert event.detail["batch"] == batch.pk
    assert "example.org" not in str(event.detail)


def test_confirming_twice_is_refused_and_changes_nothing_more(partner_list, interest):
    preview = partner_list(LIST, interests=[interest], confirm=True)
    state = database_state()
    with pytest.raises(ImportRefused, match="already confirmed; it was not applied again"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert database_state() == state


def test_confirm_is_refused_when_supporters_changed_since_the_preview(
    partner_list, interest, supporter
):
    preview = partner_list(LIST, interests=[interest])
    supporter_unsubscribe(supporter=supporter, method="email_link")
    state = database_state()
    with pytest.raises(ImportFailed, match=r"changed since the preview.*nothing was imported"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert database_state() == state
    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert batch.status == ImportBatch.Status.FAILED
    assert "changed since the preview" in batch.error


def test_confirm_is_refused_when_someone_in_the_file_was_added_meanwhile(partner_list, interest):
    preview = partner_list(LIST, interests=[interest])
    SupporterFactory(email="bo@example.org")
    with pytest.raises(ImportFailed, match="changed since the preview"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert Supporter.objects.count() == 1


def test_confirm_is_refused_when_the_stored_file_is_not_the_previewed_one(partner_list, interest):
    preview = partner_list(LIST, interests=[interest])
    ImportBatch.objects.filter(pk=preview.batch.pk).update(
        file_data=LIST.replace("Bo", "Bob").encode()
    )
    with pytest.raises(ImportFailed, match="not the one that was previewed"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert Supporter.objects.count() == 0


def test_a_failure_midway_leaves_the_database_as_it_was(partner_list, interest, monkeypatch):
    preview = partner_list(LIST, interests=[interest])
    state = database_state()
    original = confirm.consents_grant_bulk

    def fail_after_subscribing(**kwargs):
        # Supporters, history, subscriptions and consent records are written by now.
        original(**kwargs)
        assert ConsentRecord.objects.count() > state[2]
        raise RuntimeError("disk full")

    monkeypatch.setattr(confirm, "consents_grant_bulk", fail_after_subscribing)
    with pytest.raises(ImportFailed, match=r"failed \(RuntimeError\) and nothing was changed"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert database_state() == state
    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert batch.status == ImportBatch.Status.FAILED
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.IMPORTED).exists()


def test_an_unconfirmed_preview_expires_and_forgets_its_file(partner_list, interest):
    preview = partner_list(LIST, interests=[interest])
    ImportBatch.objects.filter(pk=preview.batch.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=25)
    )
    assert imports.import_expire_previews() == 1
    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert (batch.status, batch.file_data) == (ImportBatch.Status.EXPIRED, None)
    with pytest.raises(ImportRefused, match="preview expired"):
        imports.import_confirm(batch_id=batch.pk)


def test_previewing_a_file_with_errors_stores_nothing(partner_list, interest):
    preview = partner_list("Email\nnot-an-email\n", interests=[interest])
    assert preview.batch is None
    assert ImportBatch.objects.count() == 0


def test_large_confirm_runs_on_a_worker_and_reports_progress(
    partner_list, interest, membership_user, tasks_run_now, django_capture_on_commit_callbacks
):
    preview = partner_list(LIST, interests=[interest])
    with django_capture_on_commit_callbacks(execute=True):
        assert imports.import_enqueue(batch=preview.batch, actor=membership_user) is True
    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert batch.status == ImportBatch.Status.DONE
    assert batch.confirmed_by == membership_user
    assert imports.import_progress(batch_id=batch.pk) == {"stage": "done", "done": 3, "total": 3}
    assert imports.import_enqueue(batch=batch, actor=membership_user) is False
