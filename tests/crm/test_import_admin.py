"""The admin's import screens, end to end, for membership staff only."""

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from crm.models import ConsentRecord, ImportBatch, Supporter

pytestmark = pytest.mark.django_db

IMPORT = reverse("admin:crm_supporter_import")
PROCESS = reverse("admin:crm_supporter_process_import")
LIST = "Email,First name,Interests\nann@example.org,Ann,r2p\nbob@example.org,Bob,r2p\n"


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def upload(client, partner, content=LIST, name="wp.csv", **fields):
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        IMPORT,
        {
            "resource": "0",
            "partner": partner.pk,
            "format": "",
            "encoding": "auto",
            "import_file": SimpleUploadedFile(name, data),
            **fields,
        },
    )


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_membership_staff_preview_then_confirm_a_partner_list(
    staff_client, partner, interest, opted_out_supporter, membership_user
):
    page = staff_client.get(reverse("admin:crm_supporter_changelist"))
    assert IMPORT in page.content.decode()
    assert staff_client.get(IMPORT).status_code == 200

    preview = upload(staff_client, partner)
    assert preview.status_code == 200
    content = preview.content.decode()
    assert "What this file would do" in content
    assert "ann@example.org" in content
    assert "Row 3: unsubscribed from all email; left unchanged." in content
    assert "Confirm import" in content
    batch = preview.context["result"].batch
    assert batch.status == ImportBatch.Status.PREVIEWED
    assert batch.created_by == membership_user
    assert not Supporter.objects.with_email("ann@example.org").exists()

    confirmed = staff_client.post(PROCESS, {"batch": batch.pk})
    assert confirmed.status_code == 302
    assert confirmed.url == reverse("admin:crm_importbatch_change", args=[batch.pk])
    assert messages_of(confirmed) == [
        "Imported: 1 new, 0 updated, 0 unchanged, 1 skipped; 1 subscriptions with consent records."
    ]
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE
    assert batch.confirmed_by == membership_user
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert ann.consent_records.get().import_batch == batch

    page = staff_client.get(confirmed.url)
    assert page.status_code == 200
    assert "Row 3: unsubscribed from all email" in page.content.decode()
    assert "Revert this import" in page.content.decode()


def test_confirming_the_same_preview_twice_is_refused(staff_client, partner, interest):
    batch = upload(staff_client, partner).context["result"].batch
    staff_client.post(PROCESS, {"batch": batch.pk})
    again = staff_client.post(PROCESS, {"batch": batch.pk}, follow=True)
    assert "already confirmed, has expired or does not exist" in again.content.decode()
    assert ConsentRecord.objects.count() == 2


def test_a_whole_file_problem_is_shown_on_the_form_and_stores_nothing(
    staff_client, partner, interest
):
    response = upload(staff_client, partner, content="Name\nAnn\n")
    assert response.status_code == 200
    assert "The file has no email column" in response.content.decode()
    assert "confirm_form" not in response.context
    assert ImportBatch.objects.count() == 0


def test_rows_with_errors_are_listed_and_cannot_be_confirmed(staff_client, partner, interest):
    response = upload(staff_client, partner, content="Email,Interests\nann@@x,r2p\n")
    content = response.content.decode()
    assert "Some rows have errors, so nothing can be imported yet" in content
    assert "Row 2: the email address is not valid." in content
    assert "Confirm import" not in content
    assert ImportBatch.objects.count() == 0


def test_an_upload_over_the_size_limit_is_refused(staff_client, partner, settings):
    settings.RALLY_IMPORT_MAX_BYTES = 10
    response = upload(staff_client, partner)
    assert "the largest file Rally imports is" in response.content.decode()


def test_large_files_import_on_a_worker_with_a_progress_bar(
    staff_client, partner, interest, settings, tasks_run_now, django_capture_on_commit_callbacks
):
    settings.RALLY_IMPORT_ASYNC_THRESHOLD = 1
    preview = upload(staff_client, partner)
    assert "it will import in the background" in preview.content.decode()
    batch = preview.context["result"].batch
    progress_url = reverse("admin:crm_importbatch_progress", args=[batch.pk])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(PROCESS, {"batch": batch.pk})
    assert response.url == reverse("admin:crm_importbatch_change", args=[batch.pk])
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.QUEUED
    page = staff_client.get(response.url).content.decode()
    assert 'id="import-progress-bar"' in page
    waiting = staff_client.get(progress_url).json()
    assert (waiting["status"], waiting["finished"], waiting["percent"]) == ("queued", False, 0)

    for callback in callbacks:
        callback()
    done = staff_client.get(progress_url).json()
    assert (done["status"], done["finished"], done["percent"]) == ("done", True, 100)
    assert done["outcome"] == "2 new"
    assert Supporter.objects.count() == 2


def test_a_batch_can_be_reverted_from_its_page(staff_client, partner, interest):
    batch = upload(staff_client, partner).context["result"].batch
    staff_client.post(PROCESS, {"batch": batch.pk})
    revert = reverse("admin:crm_importbatch_revert", args=[batch.pk])
    assert "Yes, revert this import" in staff_client.get(revert).content.decode()
    response = staff_client.post(revert)
    assert messages_of(response)[-1].startswith("Reverted: 2 supporters removed")
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.REVERTED
    assert Supporter.objects.count() == 0


def test_the_full_preview_and_the_report_download_with_formulas_escaped(
    staff_client, partner, interest
):
    content = "Email,Interests\n=cmd@example.org,r2p\nann@example.org,r2p\nann@example.org,r2p\n"
    batch = upload(staff_client, partner, content=content).context["result"].batch
    preview = staff_client.get(reverse("admin:crm_importbatch_preview", args=[batch.pk]))
    assert preview["Content-Type"].startswith("text/csv")
    text = preview.content.decode("utf-8-sig")
    assert "'=cmd@example.org" in text
    report = staff_client.get(reverse("admin:crm_importbatch_report", args=[batch.pk]))
    assert "Row 4: same address as row 3; merged into it." in report.content.decode("utf-8-sig")


def test_campaign_managers_cannot_import(client, campaign_user, partner, interest):
    client.force_login(campaign_user)
    page = client.get(reverse("admin:crm_supporter_changelist"))
    assert page.status_code == 200
    assert IMPORT not in page.content.decode()
    assert client.get(IMPORT).status_code == 403
    assert upload(client, partner).status_code == 403
    assert client.post(PROCESS, {"batch": 1}).status_code == 403
    assert client.get(reverse("admin:crm_importbatch_changelist")).status_code == 403
    assert ImportBatch.objects.count() == 0


def test_campaign_managers_cannot_confirm_or_revert_a_batch(
    client, campaign_user, partner_list, interest
):
    preview = partner_list(LIST, interests=[interest])
    client.force_login(campaign_user)
    assert client.post(PROCESS, {"batch": preview.batch.pk}).status_code == 403
    revert = reverse("admin:crm_importbatch_revert", args=[preview.batch.pk])
    assert client.post(revert).status_code == 403
    assert Supporter.objects.count() == 0
