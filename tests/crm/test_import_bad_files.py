"""Whole-file problems: each is refused with a clear message and changes nothing."""

import pytest

from crm.imports import ImportRejected
from crm.models import ConsentRecord, ImportBatch, Subscription, Supporter
from tests.conftest import xlsx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _nothing_changes(db, interest):
    """Whatever a test feeds in, the database is as it was."""
    yield
    assert Supporter.objects.count() == 0
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0
    assert ImportBatch.objects.count() == 0


def test_file_without_an_email_column_is_refused_naming_the_headings(partner_list):
    with pytest.raises(ImportRejected, match=r"no email column.*“Name”, “Postcode”"):
        partner_list("Name,Postcode\nAlice Smith,SW1A 1AA\n")


def test_empty_file_is_refused(partner_list):
    with pytest.raises(ImportRejected, match="The file is empty"):
        partner_list(b"")
    with pytest.raises(ImportRejected, match="The file is empty"):
        partner_list(b"  \r\n\r\n")


def test_file_with_headings_only_is_refused(partner_list):
    with pytest.raises(ImportRejected, match="heading row but no data rows"):
        partner_list("Email,First name\n,\n\n")


def test_pdf_renamed_to_csv_is_refused_as_not_csv(partner_list):
    with pytest.raises(ImportRejected, match="not a CSV file: it looks like a PDF document"):
        partner_list(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", file_name="list.csv")


def test_workbook_renamed_to_csv_says_to_choose_xlsx(partner_list):
    workbook = xlsx_bytes([["Email"], ["alice@example.org"]])
    with pytest.raises(ImportRejected, match="choose the XLSX format"):
        partner_list(workbook, file_name="list.csv")


def test_binary_data_is_refused(partner_list):
    with pytest.raises(ImportRejected, match="contains binary data"):
        partner_list(b"Email\nalice@example.org\x00\x01\x02\n")


def test_text_renamed_to_xlsx_is_refused(partner_list):
    with pytest.raises(ImportRejected, match=r"not an Excel \(XLSX\) workbook"):
        partner_list("Email\nalice@example.org\n", file_name="list.xlsx")


def test_utf16_without_byte_order_mark_is_refused(partner_list):
    with pytest.raises(ImportRejected, match=r"contains binary data.*UTF-16"):
        partner_list("Email\nalice@example.org\n".encode("utf-16-le"))


def test_text_in_an_unrecognised_encoding_is_refused(partner_list):
    # 0x81 is unassigned in Windows-1252 and invalid as UTF-8.
    data = "Email,First name\nalice@example.org,Zoë\n".encode() + b"bob@example.org,\x81\x81\n"
    with pytest.raises(ImportRejected, match=r"neither UTF-8 nor Windows-1252.*line 3"):
        partner_list(data)


def test_file_not_in_the_chosen_encoding_is_refused(partner_list):
    data = "Email,First name\nalice@example.org,Zoë\n".encode("cp1252")
    with pytest.raises(ImportRejected, match="not in the UTF-8 encoding you chose: line 2"):
        partner_list(data, encoding="utf-8")


def test_file_over_the_size_limit_is_refused(partner_list, settings):
    settings.RALLY_IMPORT_MAX_BYTES = 1000
    data = "Email\n" + "".join(f"person{n}@example.org\n" for n in range(100))
    with pytest.raises(ImportRejected, match=r"The file is 2 KB; the largest file .* is 1 KB"):
        partner_list(data)


def test_workbook_with_several_sheets_is_refused(partner_list):
    workbook = xlsx_bytes([["Email"], ["alice@example.org"]], [["Notes"], ["from the fair"]])
    with pytest.raises(ImportRejected, match=r"2 sheets with data .*“Sheet1”, “Sheet2”"):
        partner_list(workbook, file_name="list.xlsx")


def test_workbook_with_a_formula_is_refused_naming_the_cell(partner_list):
    workbook = xlsx_bytes(
        [["Email", "Name"], ["alice@example.org", '=HYPERLINK("http://x.example","Alice")']]
    )
    with pytest.raises(ImportRejected, match="Cell B2 on sheet “Sheet1” contains a formula"):
        partner_list(workbook, file_name="list.xlsx")


def test_two_columns_for_the_same_field_are_refused(partner_list):
    with pytest.raises(ImportRejected, match="Both “Email” and “E-mail address” look like"):
        partner_list("Email,E-mail address\nalice@example.org,alice@example.org\n")


def test_json_that_is_not_a_list_of_people_is_refused(partner_list):
    with pytest.raises(ImportRejected, match="must hold a list of objects"):
        partner_list('{"email": "alice@example.org"}', file_name="list.json")
