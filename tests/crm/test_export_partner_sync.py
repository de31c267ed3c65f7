"""The partner sync export: everyone from a partner with their status, opt-outs since the
last sync first, so the partner can suppress them too."""

import csv
import datetime
import io

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from crm import exports, imports
from crm.models import AuditEvent, ImportBatch, PartnerOrganisation
from crm.services import supporter_erase, supporter_mark_undeliverable, supporter_unsubscribe
from tests.factories import PartnerOrganisationFactory, SupporterFactory

pytestmark = pytest.mark.django_db

HEADINGS = list(exports.SYNC_COLUMNS.values())


def read(result):
    rows = list(csv.reader(io.StringIO(result.content.decode("utf-8-sig"))))
    assert rows[0] == HEADINGS
    return [dict(zip(HEADINGS, row, strict=True)) for row in rows[1:]]


@pytest.fixture
def shared(partner_list, interest, other_interest, supporter):
    """Waging Peace shared Ann, Bo and Cy (new) and Alice (already ours)."""
    with time_machine.travel(timezone.now() - datetime.timedelta(days=30)):
        partner_list(
            "Email,First name\nann@example.org,Ann\nbo@example.org,Bo\ncy@example.org,Cy\n"
            "alice@example.org,Alice\n",
            interests=[interest, other_interest],
            confirm=True,
        )
    return {
        s.first_name: s
        for s in exports.partner_supporters(PartnerOrganisation.objects.get(slug="waging-peace"))
    }


def test_sync_lists_everyone_from_the_partner_with_current_status(shared, partner, interest):
    SupporterFactory(email="other@example.org")
    SupporterFactory(email="direct@example.org", partner=partner, first_name="Di")
    supporter_unsubscribe(supporter=shared["Bo"], interest=interest, method="email_link")
    rows = {row["Email"]: row for row in read(exports.partner_sync_export(partner=partner))}
    assert set(rows) == {
        "ann@example.org",
        "bo@example.org",
        "cy@example.org",
        "alice@example.org",
        "direct@example.org",
    }
    bo = rows["bo@example.org"]
    assert (bo["Status"], bo["Do not email"], bo["Subscribed to"], bo["Unsubscribed from"]) == (
        "Active",
        "no",
        "events",
        "r2p",
    )
    assert rows["ann@example.org"]["Subscribed to"] == "events, r2p"


def test_opt_outs_since_the_last_sync_come_first_and_are_flagged(shared, partner):
    partner.last_synced_at = timezone.now() - datetime.timedelta(days=10)
    partner.save()
    with time_machine.travel(timezone.now() - datetime.timedelta(days=20)):
        supporter_unsubscribe(supporter=shared["Cy"], method="email_link")
    supporter_unsubscribe(supporter=shared["Ann"], method="one_click")
    supporter_mark_undeliverable(supporter=shared["Bo"], status="complained", method="complaint")
    result = exports.partner_sync_export(partner=partner)
    rows = read(result)
    assert [row["Email"] for row in rows[:2]] == ["ann@example.org", "bo@example.org"]
    flagged = {row["Email"]: row["Opted out since last sync"] for row in rows}
    assert flagged == {
        "ann@example.org": "yes",
        "bo@example.org": "yes",
        "cy@example.org": "no",
        "alice@example.org": "no",
    }
    do_not_email = {row["Email"]: row["Do not email"] for row in rows}
    assert do_not_email["cy@example.org"] == "yes"
    assert do_not_email["bo@example.org"] == "yes"
    assert rows[0]["Status"] == "Unsubscribed from all email"
    assert rows[1]["Status"] == "Complained"
    assert rows[0]["Opted out at"]
    assert result.opt_outs == 2


def test_the_sync_date_is_recorded_so_the_next_sync_flags_only_newer_opt_outs(shared, partner):
    supporter_unsubscribe(supporter=shared["Ann"], method="email_link")
    first = exports.partner_sync_export(partner=partner)
    assert first.opt_outs == 1
    partner.refresh_from_db()
    assert partner.last_synced_at is not None
    second = exports.partner_sync_export(partner=partner)
    assert second.opt_outs == 0
    supporter_unsubscribe(supporter=shared["Bo"], method="email_link")
    assert exports.partner_sync_export(partner=partner).opt_outs == 1


def test_a_reverted_import_is_not_reported_as_opt_outs(shared, partner):
    batch = ImportBatch.objects.get()
    imports.import_revert(batch=batch)
    result = exports.partner_sync_export(partner=partner)
    assert result.opt_outs == 0


def test_erased_supporters_are_not_in_the_sync(shared, partner):
    supporter_erase(supporter=shared["Ann"])
    emails = {row["Email"] for row in read(exports.partner_sync_export(partner=partner))}
    assert "ann@example.org" not in emails
    assert not any(email.endswith("erased.invalid") for email in emails)


def test_the_sync_is_audited_without_personal_data(shared, partner, membership_user):
    exports.partner_sync_export(partner=partner, actor=membership_user, file_format="xlsx")
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert event.actor == membership_user
    assert event.detail["what"] == "partner sync"
    assert event.detail["partner"] == "waging-peace"
    assert event.detail["rows"] == 4
    assert "example.org" not in str(event.detail)


def test_command_writes_the_sync_file(shared, partner, tmp_path):
    supporter_unsubscribe(supporter=shared["Ann"], method="email_link")
    out = io.StringIO()
    target = tmp_path / "wp.csv"
    call_command("export_partner_sync", "waging-peace", str(target), stdout=out)
    assert "Wrote 4 supporters from Waging Peace" in out.getvalue()
    assert "1 opted out ever" in out.getvalue()
    text = target.read_bytes().decode("utf-8-sig")
    assert text.splitlines()[1].startswith("ann@example.org,")
    assert AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED).source == "command"


def test_command_since_overrides_the_last_sync(shared, partner, tmp_path):
    supporter_unsubscribe(supporter=shared["Ann"], method="email_link")
    partner.last_synced_at = timezone.now()
    partner.save()
    out = io.StringIO()
    since = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()
    call_command(
        "export_partner_sync",
        "waging-peace",
        str(tmp_path / "wp.xlsx"),
        "--since",
        since,
        stdout=out,
    )
    assert f"1 opted out since {since}" in out.getvalue()
    assert (tmp_path / "wp.xlsx").read_bytes().startswith(b"PK")


def test_command_refuses_unknown_partner_and_format(tmp_path, partner):
    with pytest.raises(CommandError, match="No partner with slug 'nobody'"):
        call_command("export_partner_sync", "nobody", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match=r"must end in \.csv or \.xlsx"):
        call_command("export_partner_sync", partner.slug, str(tmp_path / "x.pdf"))


def test_admin_sync_export_for_membership_staff(client, membership_user, shared, partner):
    client.force_login(membership_user)
    page = client.get(reverse("admin:crm_partnerorganisation_change", args=[partner.pk]))
    url = reverse("admin:crm_partnerorganisation_sync_export", args=[partner.pk])
    assert url in page.content.decode()
    assert "4 supporters who came from" in client.get(url).content.decode()
    response = client.post(url, {"file_format": "csv"})
    assert response["Content-Disposition"].startswith('attachment; filename="waging-peace-sync-')
    assert len(read(response)) == 4
    assert PartnerOrganisation.objects.get(pk=partner.pk).last_synced_at is not None


def test_another_partners_people_are_not_included(shared, partner, interest):
    aegis = PartnerOrganisationFactory(slug="aegis-trust", name="Aegis Trust")
    SupporterFactory(email="a@example.org", partner=aegis)
    assert [row["Email"] for row in read(exports.partner_sync_export(partner=aegis))] == [
        "a@example.org"
    ]


def test_campaign_managers_see_no_sync_links(client, campaign_user, partner):
    client.force_login(campaign_user)
    page = client.get(reverse("admin:crm_partnerorganisation_change", args=[partner.pk]))
    assert page.status_code == 200
    assert "Partner sync export" not in page.content.decode()
