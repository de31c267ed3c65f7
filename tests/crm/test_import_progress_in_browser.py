"""Membership staff import a large list in headless Chromium and watch its progress bar."""

import pytest
from django.core.cache import cache

from crm import imports, tasks
from crm.models import ImportBatch, Supporter
from tests.browser.conftest import browser_page, chromium  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_large_import_shows_a_progress_bar_that_updates(
    browser_page,  # noqa: F811
    membership_user,
    partner,
    interest,
    settings,
    tmp_path,
):
    settings.RALLY_IMPORT_ASYNC_THRESHOLD = 2
    path = tmp_path / "waging-peace.csv"
    path.write_text("Email,First name\nann@example.org,Ann\nbo@example.org,Bo\ncy@example.org,Cy\n")
    page = browser_page.page
    base = browser_page.base_url
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("maya")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{base}/admin/crm/supporter/")
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("Partner").select_option(label="Waging Peace")
    page.get_by_label("File to import").set_input_files(str(path))
    page.get_by_label("Responsibility to Protect").check()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("it will import in the background").wait_for()
    page.get_by_role("button", name="Confirm import").click()

    bar = page.locator("#import-progress-bar")
    bar.wait_for()
    page.get_by_text("Waiting for a worker").wait_for()
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.QUEUED

    # A worker is halfway through: the bar moves without reloading the page.
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.RUNNING)
    cache.set(imports.progress_key(batch.pk), {"stage": "writing", "done": 2, "total": 4})
    page.get_by_text("Writing: 2 of 4 rows (50%)").wait_for()
    assert bar.get_attribute("value") == "50"

    # The worker finishes; the page notices and shows the outcome.
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.QUEUED)
    tasks.import_confirm(batch.pk, membership_user.pk)
    page.locator(".field-status", has_text="Imported").wait_for()
    assert page.locator("#import-progress-bar").count() == 0
    assert page.get_by_text("3 new").count() >= 1
    assert Supporter.objects.count() == 3
    # The admin has no favicon; anything else failing would be a script error.
    assert [error for error in browser_page.errors if "404" not in error] == []
