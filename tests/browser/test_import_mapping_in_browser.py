"""Membership staff import a partner list whose headings Rally does not know, in Chromium."""

import pytest

from crm.models import ImportBatch, PartnerOrganisation, Supporter
from tests.browser.conftest import browser_page, chromium  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PARTNER_FILE = (
    "Supporter mail,Forename,Surname,Post Code,Notes\n"
    "ann.hughes@example.org,Ann,Hughes,SW1A 1AA,met at the vigil\n"
    "bo.okafor@example.org,Bo,Okafor,M1 1AE,\n"
)


def test_unfamiliar_headings_are_matched_previewed_and_imported(
    browser_page,  # noqa: F811
    membership_user,
    partner,
    interest,
    tmp_path,
):
    path = tmp_path / "waging-peace-october.csv"
    path.write_text(PARTNER_FILE)
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

    # No heading says "email" as Rally knows it: the columns are shown for matching,
    # the familiar ones already guessed, the file kept.
    page.get_by_text("The file has no email column").wait_for()
    assert page.get_by_label("Forename").input_value() == "first_name"
    assert page.get_by_label("Surname").input_value() == "last_name"
    assert page.get_by_label("Post Code").input_value() == "postcode"
    assert page.get_by_label("Notes").input_value() == ""
    assert page.get_by_text("ann.hughes@example.org").count() == 1  # an example value
    page.get_by_label("Supporter mail").select_option(label="Email")
    page.get_by_role("button", name="Preview with these columns").click()

    page.get_by_text("What this file would do").wait_for()
    assert page.locator("tr.new").count() == 2
    page.get_by_role("button", name="Confirm import").click()

    page.get_by_text("Imported: 2 new").wait_for()
    batch = ImportBatch.objects.get(status=ImportBatch.Status.DONE)
    ann = Supporter.objects.with_email("ann.hughes@example.org").get()
    assert (ann.first_name, ann.last_name, ann.postcode, ann.import_batch_id) == (
        "Ann",
        "Hughes",
        "SW1A 1AA",
        batch.pk,
    )
    assert ann.notes == ""
    bo = Supporter.objects.with_email("bo.okafor@example.org").get()
    assert (bo.first_name, bo.last_name, bo.postcode) == ("Bo", "Okafor", "M1 1AE")
    assert list(bo.subscriptions.values_list("interest__slug", flat=True)) == ["r2p"]
    assert PartnerOrganisation.objects.get(pk=partner.pk).column_mapping == {
        "Supporter mail": "email",
        "Forename": "first_name",
        "Surname": "last_name",
        "Post Code": "postcode",
        "Notes": "",
    }
    assert [error for error in browser_page.errors if "404" not in error] == []
