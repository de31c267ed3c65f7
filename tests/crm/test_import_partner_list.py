"""Importing a partner list: matching, merging, filling, subscribing with consent."""

import datetime

import pytest
from django.utils import timezone

from crm.imports import ImportRejected
from crm.models import ConsentRecord, ImportBatch, LawfulBasis, Subscription, Supporter
from tests.conftest import xlsx_bytes
from tests.factories import PartnerOrganisationFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def outcomes(preview):
    return {row.number: row.outcome for row in preview.plan.rows}


def subscribed(supporter):
    return set(
        supporter.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).values_list(
            "interest__slug", flat=True
        )
    )


def test_new_people_are_created_subscribed_with_a_partner_import_consent_record(
    partner_list, partner, interest, membership_user
):
    partner.lawful_basis = LawfulBasis.LEGITIMATE_INTERESTS
    partner.save()
    preview = partner_list(
        "Email,First Name,Surname,Postcode\nJane@Example.org,Jane,Doe,e1 6an\n",
        interests=[interest],
        confirm=True,
        actor=membership_user,
    )
    batch = preview.batch
    jane = Supporter.objects.with_email("jane@example.org").get()
    assert (jane.email, jane.first_name, jane.last_name) == ("Jane@Example.org", "Jane", "Doe")
    assert jane.source == Supporter.Source.PARTNER_IMPORT
    assert jane.partner == partner
    assert jane.import_batch == batch
    assert subscribed(jane) == {"r2p"}
    record = ConsentRecord.objects.get(supporter=jane)
    assert record.action == ConsentRecord.Action.GRANTED
    assert record.method == ConsentRecord.Method.PARTNER_IMPORT
    assert record.partner == partner
    assert record.import_batch == batch
    assert record.lawful_basis == LawfulBasis.LEGITIMATE_INTERESTS
    assert record.actor == membership_user
    assert batch.status == ImportBatch.Status.DONE
    assert batch.counts["new"] == 1
    assert batch.counts["consent_records"] == 1
    assert jane.history.first().history_change_reason == f"partner import {batch.pk}"


def test_rows_match_existing_supporters_by_email_in_any_case_and_spacing(
    partner_list, supporter, other_interest
):
    preview = partner_list(
        "Email,Interests\n  ALICE@example.ORG ,events\n", confirm=True, file_name="x.csv"
    )
    assert outcomes(preview) == {2: "updated"}
    assert Supporter.objects.count() == 1
    assert subscribed(supporter) == {"r2p", "events"}


def test_existing_supporter_already_subscribed_is_unchanged(partner_list, supporter, interest):
    preview = partner_list("email\nalice@example.org\n", interests=[interest], confirm=True)
    assert outcomes(preview) == {2: "unchanged"}
    assert ConsentRecord.objects.filter(import_batch=preview.batch).count() == 0


def test_import_fills_empty_fields_and_keeps_values_staff_set(partner_list, interest):
    held = SupporterFactory(
        email="sam@example.org", first_name="Samuel", last_name="", postcode="", phone=""
    )
    preview = partner_list(
        "Email,First name,Last name,Postcode\nsam@example.org,Sam,Okafor,LS1 4AP\n",
        interests=[interest],
        confirm=True,
    )
    held.refresh_from_db()
    assert (held.first_name, held.last_name, held.postcode) == ("Samuel", "Okafor", "LS1 4AP")
    assert "kept our first name (replacing is off)" in preview.plan.describe(preview.plan.rows[0])


def test_overwrite_replaces_values_unless_the_row_is_older_than_our_change(partner_list, interest):
    held = SupporterFactory(email="sam@example.org", first_name="Samuel", last_name="Smith")
    older = (held.updated_at - datetime.timedelta(days=3)).date().isoformat()
    newer = (timezone.localdate() + datetime.timedelta(days=1)).isoformat()
    partner_list(
        f"Email,First name,Updated\nsam@example.org,Sam,{older}\n",
        interests=[interest],
        confirm=True,
        overwrite=True,
    )
    held.refresh_from_db()
    assert held.first_name == "Samuel"
    partner_list(
        f"Email,Last name,Updated\nsam@example.org,Smyth,{newer}\n",
        interests=[interest],
        confirm=True,
        overwrite=True,
    )
    held.refresh_from_db()
    assert held.last_name == "Smyth"
    partner_list(
        "Email,First name\nsam@example.org,Sammy\n",
        interests=[interest],
        confirm=True,
        overwrite=True,
    )
    held.refresh_from_db()
    assert held.first_name == "Sammy"


def test_field_changes_are_kept_in_the_supporters_history(partner_list, interest):
    held = SupporterFactory(email="sam@example.org", postcode="")
    partner_list("Email,Postcode\nsam@example.org,LS1 4AP\n", interests=[interest], confirm=True)
    latest = held.history.first()
    assert latest.postcode == "LS1 4AP"
    assert latest.history_type == "~"
    assert latest.prev_record.postcode == ""


def test_duplicates_in_one_file_are_merged_and_reported(partner_list, interest, other_interest):
    preview = partner_list(
        "Email,First name,Last name,Interests\n"
        "jo@example.org,Jo,,r2p\n"
        "bob@example.org,Bob,,\n"
        "JO@example.org ,Joanne,Cox,events\n",
        interests=[interest],
        confirm=True,
    )
    assert outcomes(preview) == {2: "new", 3: "new", 4: "merged"}
    assert preview.plan.rows[2].message == (
        "Row 4: same address as row 2; merged into it (kept row 2's first name)."
    )
    jo = Supporter.objects.with_email("jo@example.org").get()
    assert (jo.first_name, jo.last_name) == ("Jo", "Cox")
    assert subscribed(jo) == {"r2p", "events"}
    assert preview.batch.counts["merged"] == 1
    assert [4, "merged", preview.plan.rows[2].message] in preview.batch.report


def test_interests_named_in_the_file_by_slug_or_name_become_subscriptions(
    partner_list, interest, other_interest
):
    partner_list(
        "Email,Topics\n"
        "a@example.org,r2p; Events and actions\n"
        "b@example.org,responsibility to protect\n",
        confirm=True,
    )
    assert subscribed(Supporter.objects.with_email("a@example.org").get()) == {"r2p", "events"}
    assert subscribed(Supporter.objects.with_email("b@example.org").get()) == {"r2p"}


def test_headings_are_matched_flexibly(partner_list, interest):
    preview = partner_list(
        "E-mail Address;FIRST_NAME;last-name;Zip Code;Organization;Mobile;Country\n"
        "ann@example.org;Ann;Lee;10001;ACME;+1 555 0100;United States\n",
        interests=[interest],
        confirm=True,
    )
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert (ann.first_name, ann.last_name, ann.postcode) == ("Ann", "Lee", "10001")
    assert (ann.organisation, ann.phone, ann.country.code) == ("ACME", "+1 555 0100", "US")
    assert preview.plan.columns["email"] == "E-mail Address"


def test_a_full_name_column_is_split_and_unknown_columns_are_reported(partner_list, interest):
    preview = partner_list(
        "Name,Email,Shoe size\nMary Anne Smith,mary@example.org,5\n",
        interests=[interest],
        confirm=True,
    )
    mary = Supporter.objects.with_email("mary@example.org").get()
    assert (mary.first_name, mary.last_name) == ("Mary Anne", "Smith")
    assert preview.plan.ignored_columns == ["Shoe size"]


def test_windows_1252_csv_from_excel_is_read(partner_list, interest):
    data = "Email,First name\r\nzoe@example.org,Zoë\r\nrene@example.org,René\r\n".encode("cp1252")
    preview = partner_list(data, interests=[interest], confirm=True)
    assert preview.table.encoding == "cp1252"
    names = set(Supporter.objects.values_list("first_name", flat=True))
    assert names == {"Zoë", "René"}


def test_utf8_with_byte_order_mark_and_utf16_text_are_read(partner_list, interest):
    partner_list(
        "\ufeffEmail,First name\nzoe@example.org,Zoë\n".encode(), interests=[interest], confirm=True
    )
    partner_list(
        "Email\tFirst name\nrene@example.org\tRené\n".encode("utf-16"),
        file_name="list.txt",
        interests=[interest],
        confirm=True,
    )
    assert set(Supporter.objects.values_list("first_name", flat=True)) == {"Zoë", "René"}


def test_xlsx_and_json_lists_are_imported(partner_list, interest):
    partner_list(
        xlsx_bytes([["Email", "First name", "Phone"], ["x@example.org", "Xan", 7700900123]]),
        file_name="list.xlsx",
        interests=[interest],
        confirm=True,
    )
    partner_list(
        '[{"email": "y@example.org", "first_name": "Yas"}]',
        file_name="list.json",
        interests=[interest],
        confirm=True,
    )
    assert Supporter.objects.with_email("x@example.org").get().phone == "7700900123"
    assert Supporter.objects.with_email("y@example.org").get().first_name == "Yas"


def test_row_errors_name_the_row_and_nothing_is_imported(partner_list, interest):
    long_name = "A" * 101
    preview = partner_list(
        "Email,First name,Interests,Partner,Country\n"
        "ok@example.org,Ok,,,\n"
        "not-an-email,,,,\n"
        f"long@example.org,{long_name},,,\n"
        "topic@example.org,,climate,,\n"
        "who@example.org,,,nobody,\n"
        "where@example.org,,,,Narnia\n"
        ",Nobody,,,\n",
        interests=[interest],
    )
    messages = [row.message for row in preview.plan.errors]
    assert messages == [
        "Row 3: the email address is not valid.",
        "Row 4: First name is 101 characters long; at most 100 fit.",
        "Row 5: “climate” is not a known interest (known: r2p).",
        "Row 6: “nobody” is not a known partner (known: waging-peace).",
        "Row 7: “Narnia” is not a country Rally knows; use a country name or a two-letter "
        "code such as GB.",
        "Row 8: no email address.",
    ]
    assert preview.batch is None
    assert Supporter.objects.count() == 0
    assert ImportBatch.objects.count() == 0


def test_rows_without_any_interest_are_errors(partner_list):
    preview = partner_list("Email\nann@example.org\n")
    assert preview.plan.errors[0].message == (
        "Row 2: no interest to subscribe to: fill the Interests column or choose interests for "
        "the whole import."
    )


def test_skip_invalid_imports_the_valid_rows_and_reports_the_others(partner_list, interest):
    preview = partner_list(
        "Email\nok@example.org\nnot-an-email\n",
        interests=[interest],
        skip_invalid=True,
        confirm=True,
    )
    assert list(Supporter.objects.values_list("email", flat=True)) == ["ok@example.org"]
    assert preview.batch.counts["error"] == 1
    assert [3, "error", "Row 3: the email address is not valid."] in preview.batch.report


def test_a_partner_column_credits_each_row_to_its_partner(partner_list, interest):
    aegis = PartnerOrganisationFactory(
        slug="aegis-trust", name="Aegis Trust", lawful_basis=LawfulBasis.LEGITIMATE_INTERESTS
    )
    partner_list(
        "Email,Partner\nann@example.org,aegis-trust\nbo@example.org,\n",
        interests=[interest],
        confirm=True,
    )
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert ann.partner == aegis
    record = ann.consent_records.get()
    assert (record.partner, record.lawful_basis) == (aegis, LawfulBasis.LEGITIMATE_INTERESTS)
    assert Supporter.objects.with_email("bo@example.org").get().partner.slug == "waging-peace"


def test_reimporting_the_same_file_changes_nothing(partner_list, interest):
    content = "Email,First name\nann@example.org,Ann\nbo@example.org,Bo\n"
    partner_list(content, interests=[interest], confirm=True)
    again = partner_list(content, interests=[interest], confirm=True)
    assert outcomes(again) == {2: "unchanged", 3: "unchanged"}
    assert again.duplicate_of is not None
    assert ConsentRecord.objects.count() == 2


def test_the_report_never_holds_email_addresses(partner_list, interest, opted_out_supporter):
    preview = partner_list(
        "Email\nbob@example.org\nbad@@example.org\nBOB@example.org\n",
        interests=[interest],
        skip_invalid=True,
    )
    assert "example.org" not in str(preview.batch.report)


def test_unknown_format_is_refused(partner_list):
    with pytest.raises(ImportRejected, match="cannot import 'xml' files"):
        partner_list("<people/>", file_format="xml")


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_chosen_encoding_is_used(partner_list, interest, encoding):
    data = "email_address,First Name\nzoe@example.org,Zoë\n".encode(encoding)
    preview = partner_list(data, interests=[interest], encoding=encoding, confirm=True)
    assert preview.table.encoding == encoding
    assert Supporter.objects.get().first_name == "Zoë"
