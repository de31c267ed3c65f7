"""Matching a partner's columns to Rally's fields: guessed, adjusted, remembered, checked."""

import datetime
from io import StringIO

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from crm import imports, roles
from crm.models import ImportBatch, PartnerOrganisation, Supporter
from tests.conftest import _user_in
from tests.factories import PartnerOrganisationFactory

pytestmark = pytest.mark.django_db

IMPORT = reverse("admin:crm_supporter_import")
PROCESS = reverse("admin:crm_supporter_process_import")
TEMPLATE = reverse("admin:crm_supporter_import_template")
# Headings no synonym covers: the first upload from this partner needs matching.
UNFAMILIAR = (
    "Supporter mail,Known as,Family,Notes\n"
    "ann@example.org,Ann,Smith,met at the vigil\n"
    "bo@example.org,Bo,Jones,\n"
)


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def upload(client, partner, content, *, name="list.csv", **fields):
    return client.post(
        IMPORT,
        {
            "resource": "0",
            "partner": partner.pk,
            "format": "",
            "encoding": "auto",
            "import_file": SimpleUploadedFile(name, content.encode()),
            **fields,
        },
    )


def match(client, response, columns, **fields):
    """Post the mapping form of `response` with `columns` ({heading: field}) changed."""
    form = response.context["mapping_form"]
    data = {"upload": form.upload.token, **fields}
    for index, (heading, _) in enumerate(form.upload.columns):
        data[f"column_{index}"] = columns.get(heading, form[f"column_{index}"].value() or "")
    return client.post(IMPORT, data)


def confirm(client, preview):
    initial = preview.context["confirm_form"].initial
    return client.post(PROCESS, {"batch": initial["batch"].pk, "upload": initial["upload"]})


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    ("heading", "field"),
    [
        ("E-mail", "email"),
        ("Email address", "email"),
        ("E-mail Address", "email"),
        ("Contact E-mail Address", "email"),
        ("Supporter's email (work)", "email"),
        ("Forename", "first_name"),
        ("First name", "first_name"),
        ("given_name", "first_name"),
        ("Surname", "last_name"),
        ("LAST NAME", "last_name"),
        ("Family name", "last_name"),
        ("Post Code", "postcode"),
        ("Zip", "postcode"),
        ("Mobile", "phone"),
        ("Telephone", "phone"),
        ("Phone", "phone"),
        ("Organization", "organisation"),
        ("Company", "organisation"),
        ("Country", "country"),
        ("Topics", "interests"),
        ("Interests", "interests"),
        ("Notes", ""),
        ("Tags", ""),
        ("Consent date", ""),
    ],
)
def test_headings_are_guessed_ignoring_case_spaces_and_punctuation(heading, field):
    """Each heading gets the Rally field its synonym names, or "" (ignored) when none does."""
    assert imports.guess_columns(["Email", heading] if field != "email" else [heading]) == (
        {"Email": "email", heading: field} if field != "email" else {heading: "email"}
    )


def test_a_heading_with_email_in_it_is_taken_for_email_only_when_nothing_else_is():
    assert imports.guess_columns(["Email", "Referrer email"]) == {
        "Email": "email",
        "Referrer email": "",
    }
    # A partner who ignored such a column keeps it ignored.
    assert imports.guess_columns(["Contact email", "Mail"], {"Contact email": ""}) == {
        "Contact email": "",
        "Mail": "email",
    }


def test_tags_and_consent_dates_are_ignored_with_the_reason():
    """Rally does not import tags or a partner's consent dates, and says why beside the column."""
    assert "does not import tags" in imports.not_imported_note("Tags")
    assert "dated when you confirm" in imports.not_imported_note("Consent date")
    assert imports.not_imported_note("Email") == ""


def test_this_imports_choices_come_before_the_partners_and_the_partners_before_guesses():
    headers = ["E-mail", "Mobile", "Supporter mail", "Postcode"]
    remembered = {"supporter MAIL": "email", "E-mail": "", "mobile": ""}
    chosen = {"Mobile": "phone"}
    assert imports.guess_columns(headers, chosen, remembered) == {
        "E-mail": "",
        "Mobile": "phone",
        "Supporter mail": "email",
        "Postcode": "postcode",
    }


def test_unfamiliar_columns_are_matched_by_hand_then_previewed_and_imported(
    staff_client, partner, interest
):
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    content = first.content.decode()
    assert "The file has no email column" in content
    assert "Match the columns" in content
    assert "confirm_form" not in first.context
    assert ImportBatch.objects.count() == 0
    form = first.context["mapping_form"]
    assert [heading for heading, _ in form.upload.columns] == [
        "Supporter mail",
        "Known as",
        "Family",
        "Notes",
    ]
    assert dict(form.upload.columns)["Supporter mail"] == ["ann@example.org", "bo@example.org"]

    preview = match(
        staff_client,
        first,
        {"Supporter mail": "email", "Known as": "first_name", "Family": "last_name"},
        interests=[interest.pk],
    )
    assert preview.status_code == 200
    assert preview.context["plan"].counts["new"] == 2
    batch = preview.context["result"].batch
    assert batch.options["columns"] == {
        "Supporter mail": "email",
        "Known as": "first_name",
        "Family": "last_name",
        "Notes": "",
    }
    confirmed = confirm(staff_client, preview)
    assert confirmed.status_code == 302
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert (ann.first_name, ann.last_name, ann.notes) == ("Ann", "Smith", "")
    assert list(ann.subscriptions.values_list("interest__slug", flat=True)) == ["r2p"]


def test_a_mapping_without_email_is_refused_and_the_file_is_kept(staff_client, partner, interest):
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    refused = match(staff_client, first, {}, interests=[interest.pk])
    assert "No column is matched to Email" in refused.content.decode()
    assert "result" not in refused.context
    assert ImportBatch.objects.count() == 0
    # The same upload previews once the email column is matched: no second upload.
    again = match(staff_client, refused, {"Supporter mail": "email"}, interests=[interest.pk])
    assert again.context["plan"].counts["new"] == 2


def test_two_columns_matched_to_one_field_are_refused(staff_client, partner, interest):
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    refused = match(
        staff_client,
        first,
        {"Supporter mail": "email", "Known as": "last_name", "Family": "last_name"},
        interests=[interest.pk],
    )
    content = refused.content.decode()
    assert "“Known as” is already matched to Last name" in content
    assert "Ignore this column" in content
    assert ImportBatch.objects.count() == 0


def test_guessed_columns_that_clash_are_shown_for_matching(staff_client, partner, interest):
    content = "Email,E-mail address,First name\nann@example.org,ann@work.example.org,Ann\n"
    first = upload(staff_client, partner, content, interests=[interest.pk])
    assert "look like the Email column" in first.content.decode()
    preview = match(staff_client, first, {"E-mail address": ""}, interests=[interest.pk])
    assert preview.context["plan"].counts["new"] == 1
    assert preview.context["plan"].ignored_columns == ["E-mail address"]


def test_adjusting_a_guess_previews_the_kept_file_again_and_replaces_the_earlier_preview(
    staff_client, partner, interest
):
    content = "Email,Name,Mobile\nann@example.org,Ann Smith,yes\n"
    first = upload(staff_client, partner, content, interests=[interest.pk])
    earlier = first.context["result"].batch
    assert first.context["mapping_form"]["column_2"].value() == "phone"
    preview = match(staff_client, first, {"Mobile": ""}, overwrite="on", interests=[interest.pk])
    batch = preview.context["result"].batch
    assert batch.pk != earlier.pk
    assert batch.options["overwrite"] is True
    assert preview.context["plan"].ignored_columns == ["Mobile"]
    earlier.refresh_from_db()
    assert earlier.status == ImportBatch.Status.EXPIRED
    assert earlier.file_data is None
    stale = staff_client.post(PROCESS, {"batch": earlier.pk}, follow=True)
    assert "already confirmed, has expired or does not exist" in stale.content.decode()

    confirm(staff_client, preview)
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert (ann.first_name, ann.last_name, ann.phone) == ("Ann", "Smith", "")


def test_the_mapping_is_remembered_for_the_partner_and_offered_first_next_time(
    staff_client, partner, interest
):
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    preview = match(
        staff_client,
        first,
        {"Supporter mail": "email", "Known as": "first_name", "Family": "last_name"},
        interests=[interest.pk],
    )
    partner.refresh_from_db()
    assert partner.column_mapping == {}  # nothing is remembered before an import is confirmed
    confirm(staff_client, preview)
    partner.refresh_from_db()
    assert partner.column_mapping == {
        "Supporter mail": "email",
        "Known as": "first_name",
        "Family": "last_name",
        "Notes": "",
    }

    later = "Supporter mail,Known as,Family,Notes\ncy@example.org,Cy,Brown,\n"
    second = upload(staff_client, partner, later, interests=[interest.pk])
    assert "confirm_form" in second.context  # previewed at once, no matching needed
    assert "choices made for Waging Peace" in second.content.decode()
    form = second.context["mapping_form"]
    assert [form[f"column_{i}"].value() for i in range(4)] == [
        "email",
        "first_name",
        "last_name",
        "",
    ]
    # Another partner's headings are their own.
    other = PartnerOrganisationFactory(slug="other", name="Other Coalition")
    elsewhere = upload(staff_client, other, later, interests=[interest.pk])
    assert "The file has no email column" in elsewhere.content.decode()


def test_a_kept_upload_is_only_for_the_staff_member_who_chose_it(
    staff_client, client, partner, interest, django_user_model
):
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    colleague = _user_in(django_user_model, "nia", roles.MEMBERSHIP_STAFF)
    client.force_login(colleague)
    answer = match(client, first, {"Supporter mail": "email"}, interests=[interest.pk])
    assert answer.status_code == 302
    assert "Choose the file again" in messages_of(answer)[0]
    assert ImportBatch.objects.count() == 0


def test_an_abandoned_upload_is_forgotten_after_the_preview_hours(
    staff_client, partner, interest, settings
):
    settings.RALLY_IMPORT_PREVIEW_HOURS = 24
    first = upload(staff_client, partner, UNFAMILIAR, interests=[interest.pk])
    token = first.context["mapping_form"].upload.token
    with time_machine.travel(datetime.timedelta(hours=25)):
        answer = match(staff_client, first, {"Supporter mail": "email"}, interests=[interest.pk])
    assert answer.status_code == 302
    assert "more than 24 hours old" in messages_of(answer)[0]
    assert cache.get(f"crm:import-upload:{token}") is None


def test_confirming_an_import_forgets_its_upload(staff_client, partner, interest):
    first = upload(staff_client, partner, "Email\nann@example.org\n", interests=[interest.pk])
    confirm(staff_client, first)
    again = match(staff_client, first, {}, interests=[interest.pk])
    assert again.status_code == 302
    assert ImportBatch.objects.get().status == ImportBatch.Status.DONE


def test_the_csv_template_names_rallys_columns_and_imports_as_it_is(
    staff_client, partner, interest, other_interest
):
    response = staff_client.get(TEMPLATE)
    assert response["Content-Type"].startswith("text/csv")
    assert "rally-import-template.csv" in response["Content-Disposition"]
    heading, example = response.content.decode("utf-8-sig").splitlines()
    assert heading == (
        "Email,First name,Last name,Postcode,Country,Phone,Organisation,Interests,Updated"
    )
    assert example.startswith("jo.example@example.org,Jo,Example,")
    assert "r2p;events" in example or "events;r2p" in example

    preview = upload(staff_client, partner, response.content.decode("utf-8-sig"))
    plan = preview.context["plan"]
    assert (plan.counts["new"], plan.counts["error"], plan.ignored_columns) == (1, 0, [])
    assert "Download a CSV template" in staff_client.get(IMPORT).content.decode()


def test_campaign_managers_cannot_download_the_template_or_match_columns(
    client, campaign_user, partner
):
    client.force_login(campaign_user)
    assert client.get(TEMPLATE).status_code == 403
    assert client.post(IMPORT, {"upload": "0" * 32}).status_code == 403


def test_the_command_takes_a_column_mapping(tmp_path, partner, interest):
    path = tmp_path / "list.csv"
    path.write_text(UNFAMILIAR)
    out = StringIO()
    args = ["import_supporters", str(path), "--partner", partner.slug, "--interest", "r2p"]
    with pytest.raises(CommandError, match="The file has no email column"):
        call_command(*args, stdout=out)
    with pytest.raises(CommandError, match="'mail' is not a field Rally imports"):
        call_command(*args, "--column", "Supporter mail=mail", stdout=out)
    call_command(
        *args,
        "--column",
        "supporter mail=email",
        "--column",
        "Known as=first_name",
        "--column",
        "Family=",
        stdout=out,
    )
    ann = Supporter.objects.with_email("ann@example.org").get()
    assert (ann.first_name, ann.last_name) == ("Ann", "")
    assert (
        PartnerOrganisation.objects.get(pk=partner.pk).column_mapping["Supporter mail"] == "email"
    )
