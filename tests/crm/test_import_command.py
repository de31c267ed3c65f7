"""`manage.py import_supporters`: the same checks and rules as the admin, from a shell."""

import pytest
from django.core.management import CommandError, call_command

from crm.models import ConsentRecord, ImportBatch, Supporter
from tests.conftest import xlsx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def list_file(tmp_path):
    def write(content, name="waging-peace.csv"):
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command("import_supporters", *map(str, args), stdout=out)
    return out.getvalue()


def test_dry_run_reports_each_outcome_and_changes_nothing(
    list_file, partner, interest, opted_out_supporter
):
    path = list_file("Email,First name\nann@example.org,Ann\nbob@example.org,Bob\n")
    out = run(path, "--partner", partner.slug, "--interest", interest.slug, "--dry-run")
    assert (
        "Would import 2 rows from waging-peace.csv: 1 new, 0 updated, 0 unchanged, 1 skipped" in out
    )
    assert "Row 3: unsubscribed from all email; left unchanged." in out
    assert "Dry run: nothing was changed." in out
    assert Supporter.objects.count() == 1
    assert ImportBatch.objects.count() == 0


def test_import_applies_the_list_as_one_batch(list_file, partner, interest, other_interest):
    path = list_file(xlsx_bytes([["Email", "Topics"], ["ann@example.org", "events"]]), "list.xlsx")
    out = run(path, "--partner", partner.slug, "--interest", interest.slug)
    assert "Imported 1 rows from list.xlsx: 1 new" in out
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.DONE
    assert f"Batch #{batch.pk}: 1 supporters created" in out
    records = ConsentRecord.objects.filter(import_batch=batch)
    assert sorted(records.values_list("interest__slug", "actor_label")) == [
        ("events", "partner import command"),
        ("r2p", "partner import command"),
    ]


def test_rows_with_errors_stop_the_import_with_the_reasons(list_file, partner, interest):
    path = list_file("Email\nann@example.org\nnot-an-email\n")
    with pytest.raises(CommandError, match="1 rows have errors, so nothing was imported"):
        run(path, "--partner", partner.slug, "--interest", interest.slug)
    assert Supporter.objects.count() == 0


def test_whole_file_problems_are_reported(list_file, partner, interest):
    path = list_file("Name\nAnn\n")
    with pytest.raises(CommandError, match="The file has no email column"):
        run(path, "--partner", partner.slug, "--interest", interest.slug)


def test_unknown_partner_or_interest_is_reported(list_file, partner, interest):
    path = list_file("Email\nann@example.org\n")
    with pytest.raises(CommandError, match=r"No partner with slug 'nobody'.*waging-peace"):
        run(path, "--partner", "nobody")
    with pytest.raises(CommandError, match="Unknown interest"):
        run(path, "--partner", partner.slug, "--interest", "climate")
