"""Exporting supporters from the admin: a filtered list, a segment, a partner's list or a
selection, with chosen columns, as CSV or XLSX, recorded in the audit trail."""

import csv
import io

import openpyxl
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from crm import exports
from crm.models import AuditEvent
from tests.factories import SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db

EXPORT = reverse("admin:crm_supporter_export")
CHANGELIST = reverse("admin:crm_supporter_changelist")


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def export_form(columns, file_format="0", **extra):
    data = {"resource": "0", "format": file_format, **extra}
    data.update({f"supporterresource_{name}": "on" for name in columns})
    return data


def read_csv(response):
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_export_has_only_the_chosen_columns_and_is_audited(
    staff_client, supporter, opted_out_supporter, membership_user
):
    response = staff_client.post(EXPORT, export_form(["email", "interests"]))
    rows = read_csv(response)
    assert rows[0] == ["Email", "Interests"]
    assert sorted(rows[1:]) == [["alice@example.org", "r2p"], ["bob@example.org", ""]]
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert event.actor == membership_user
    assert event.detail == {
        "what": "supporters",
        "rows": 2,
        "columns": ["email", "interests"],
        "format": "csv",
        "filters": {},
        "searched": False,
    }


def test_export_of_a_segment_holds_only_its_members(staff_client, supporter, partner):
    member = SupporterFactory(email="member@example.org", partner=partner)
    segment = SegmentFactory(rules={"partners": [partner.slug]})
    response = staff_client.post(
        f"{EXPORT}?segment={segment.pk}", export_form(["email", "first_name", "partner"])
    )
    assert read_csv(response)[1:] == [[member.email, "Sam", "Waging Peace"]]
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert (event.detail["what"], event.detail["segment"], event.detail["rows"]) == (
        "segment",
        str(segment.pk),
        1,
    )
    segment_page = staff_client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    assert f"{EXPORT}?segment={segment.pk}" in segment_page.content.decode()


def test_export_of_a_partners_list_as_xlsx(staff_client, supporter, partner):
    SupporterFactory(email="p@example.org", partner=partner, first_name="Pat")
    response = staff_client.post(
        f"{EXPORT}?partner__id__exact={partner.pk}",
        export_form(["email", "first_name", "status"], file_format="1"),
    )
    assert response["Content-Type"] == exports.CONTENT_TYPES["xlsx"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert [[cell.value for cell in row] for row in sheet.rows] == [
        ["Email", "First name", "Status"],
        ["p@example.org", "Pat", "Active"],
    ]
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert (event.detail["what"], event.detail["format"]) == ("partner list", "xlsx")


def test_export_of_selected_supporters(staff_client, supporter, opted_out_supporter):
    form = staff_client.post(
        CHANGELIST,
        {"action": "export_admin_action", ACTION_CHECKBOX_NAME: [opted_out_supporter.pk]},
    )
    assert form.status_code == 200
    assert "Export 1 selected item" in form.content.decode()
    response = staff_client.post(
        EXPORT, export_form(["email"], export_items=[opted_out_supporter.pk])
    )
    assert read_csv(response) == [["Email"], ["bob@example.org"]]
    assert AuditEvent.objects.get(kind="exported").detail["what"] == "selected supporters"


def test_export_of_all_matching_a_filter_exports_the_filtered_list(
    staff_client, supporter, opted_out_supporter
):
    response = staff_client.post(
        f"{CHANGELIST}?status__exact=unsubscribed",
        {
            "action": "export_admin_action",
            ACTION_CHECKBOX_NAME: [opted_out_supporter.pk],
            "select_across": "1",
        },
    )
    assert response.status_code == 302
    assert response.url == f"{EXPORT}?status__exact=unsubscribed"
    rows = read_csv(staff_client.post(response.url, export_form(["email"])))
    assert rows == [["Email"], ["bob@example.org"]]


def test_the_audit_trail_never_records_a_search_term(staff_client, supporter):
    staff_client.post(f"{EXPORT}?q=alice@example.org", export_form(["email"]))
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert event.detail["searched"] is True
    assert "alice" not in str(event.detail)


def test_campaign_managers_cannot_export(client, campaign_user, supporter, partner):
    client.force_login(campaign_user)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert EXPORT not in page.content.decode()
    assert "export_admin_action" not in page.content.decode()
    assert client.get(EXPORT).status_code == 403
    assert client.post(EXPORT, export_form(["email"])).status_code == 403
    sync = reverse("admin:crm_partnerorganisation_sync_export", args=[partner.pk])
    assert client.post(sync, {"file_format": "csv"}).status_code == 403
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.EXPORTED).exists()


def test_exporting_100_rows_reads_in_a_few_queries(
    supporter, interest, django_assert_max_num_queries
):
    for n in range(100):
        SupporterFactory(email=f"s{n}@example.org", subscribed_to=[interest])
    with django_assert_max_num_queries(8):
        result = exports.supporters_export(
            supporters=exports.Supporter.objects.all(), columns=list(exports.COLUMNS)
        )
    assert result.rows == 101
