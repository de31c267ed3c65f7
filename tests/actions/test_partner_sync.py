"""Two-way partner sync: partner opt-ins go out in the partner's sync export; the opt-outs a
partner sends back withdraw what that partner brought, and stay withdrawn."""

import csv
import io

import pytest

from crm import exports
from crm.models import (
    AuditEvent,
    ConsentRecord,
    PartnerConsent,
    PartnerOptOutFile,
    Subscription,
    Supporter,
)
from crm.services import partner_optouts_apply
from mailings.actions import services

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _single_opt_in(settings):
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False


def sync_rows(partner):
    content = exports.partner_sync_export(partner=partner).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == list(exports.SYNC_COLUMNS.values())
    return {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}


def sign(petition, email, **kwargs):
    return services.action_sign(
        action=petition,
        email=email,
        first_name="Nadia",
        last_name="Hassan",
        postcode="E1 6AN",
        **kwargs,
    )


def test_sync_export_carries_partner_opt_ins_with_only_the_agreed_fields(petition, aegis, stand):
    """Only people who ticked the partner's box are in its file, with only the fields agreed."""
    sign(petition, "nadia@example.org", partner_opt_ins=["aegis", "stand-uk"])
    sign(petition, "omar@example.org", source="aegis")  # signed on Aegis's page, no tick
    sign(petition, "lena@example.org", opt_in=True)  # yes to us only

    aegis_rows = sync_rows(aegis)
    assert set(aegis_rows) == {"nadia@example.org"}
    nadia = aegis_rows["nadia@example.org"]
    assert (nadia["First name"], nadia["Last name"], nadia["Postcode"]) == (
        "Nadia",
        "Hassan",
        "E1 6AN",
    )
    assert nadia["Phone"] == "" and nadia["Subscribed to"] == "" and nadia["Status"] == ""
    assert nadia["Do not email"] == "no" and nadia["Opted in to you at"]

    stand_rows = sync_rows(stand)
    nadia = stand_rows["nadia@example.org"]
    assert (nadia["First name"], nadia["Last name"], nadia["Postcode"]) == ("Nadia", "", "")


def test_sync_export_escapes_formulas_in_shared_names(petition, aegis):
    """A name typed as a formula reaches the partner's spreadsheet as text."""
    services.action_sign(
        action=petition,
        email="x@example.org",
        first_name='=HYPERLINK("http://evil")',
        last_name="Doe",
        postcode="E1 6AN",
        partner_opt_ins=["aegis"],
    )
    row = sync_rows(aegis)["x@example.org"]
    assert row["First name"] == '\'=HYPERLINK("http://evil")'


def test_partner_opt_out_file_withdraws_what_the_partner_brought(
    petition, aegis, interest, other_interest, partner_list, staff_member
):
    """An opted-out address loses the partner's opt-in and the partner's subscriptions only.

    Each withdrawal is a consent record naming the partner and the file; the
    receipt keeps the counts and the rows that matched nobody; and a later
    import of the same partner's list never subscribes them again.
    """
    # Aegis shared Nadia and Omar; Nadia also joined our R2P list herself and opted in to Aegis.
    partner_list(
        "Email,First name\nnadia@example.org,Nadia\nomar@example.org,Omar\n",
        interests=[other_interest],
        confirm=True,
        partner=aegis,
    )
    sign(petition, "nadia@example.org", opt_in=True, partner_opt_ins=["aegis"])
    nadia = Supporter.objects.get(email="nadia@example.org")
    file = io.BytesIO(
        b"Email Address,Unsubscribed\nNADIA@example.org ,2026-12-01\n"
        b"ghost@example.org,2026-12-01\nnot an address,2026-12-02\n"
    )
    file.name = "aegis-unsubscribes.csv"

    receipt = partner_optouts_apply(partner=aegis, file=file, actor=staff_member)

    assert (receipt.rows, receipt.matched, receipt.withdrawn) == (3, 1, 1)
    assert (receipt.subscriptions_withdrawn, receipt.opt_ins_withdrawn) == (1, 1)
    assert receipt.unmatched == [[2, "ghost@example.org"]]
    assert receipt.invalid == [[3, "not an address"]]
    statuses = dict(
        Subscription.objects.filter(supporter=nadia).values_list("interest__slug", "status")
    )
    assert statuses == {"r2p": "subscribed", "events": "unsubscribed"}
    (withdrawal,) = ConsentRecord.objects.filter(
        supporter=nadia, action=ConsentRecord.Action.WITHDRAWN
    )
    assert withdrawal.method == ConsentRecord.Method.PARTNER_OPT_OUT
    assert withdrawal.partner == aegis and withdrawal.actor == staff_member
    assert "aegis-unsubscribes.csv" in withdrawal.actor_label
    assert f"receipt #{receipt.pk}" in withdrawal.actor_label
    latest = PartnerConsent.objects.filter(supporter=nadia).first()
    assert latest.action == PartnerConsent.Action.WITHDRAWN and latest.optout_file == receipt
    assert (
        "nadia@example.org" not in sync_rows(aegis)
        or sync_rows(aegis)["nadia@example.org"]["Opted in to you at"] == ""
    )
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.CONSENT_WITHDRAWN, detail__receipt=receipt.pk
    ).exists()

    # The partner's next list names her again: she stays unsubscribed.
    partner_list(
        "Email,First name\nnadia@example.org,Nadia\n",
        interests=[other_interest],
        confirm=True,
        partner=aegis,
    )
    assert Subscription.objects.get(supporter=nadia, interest=other_interest).status == (
        Subscription.Status.UNSUBSCRIBED
    )


def test_opt_outs_from_the_api_are_rows_and_a_repeat_changes_nothing(petition, aegis):
    """Rows instead of a file; applying the same opt-outs twice withdraws nothing more."""
    sign(petition, "nadia@example.org", partner_opt_ins=["aegis"])
    first = partner_optouts_apply(partner=aegis, rows=["nadia@example.org"])
    second = partner_optouts_apply(partner=aegis, rows=["nadia@example.org"])
    assert (first.withdrawn, second.withdrawn) == (1, 0)
    assert (first.matched, second.matched) == (1, 1)
    assert PartnerOptOutFile.objects.count() == 2
    with pytest.raises(ValueError, match="Give the partner's opt-out file or its rows"):
        partner_optouts_apply(partner=aegis)


def test_erasure_removes_partner_opt_ins_and_where_they_signed(petition, aegis, settings):
    """Erasing a supporter deletes their partner opt-ins and blanks their signatures' details;
    their data export lists both beforehand."""
    from crm.services import supporter_erase, supporter_export_data

    settings.RALLY_RECORD_IP = True
    signature = sign(
        petition, "nadia@example.org", partner_opt_ins=["aegis"], ip="203.0.113.9",
        page_url="https://rally.example.org/act/el-fasher/",
    )  # fmt: skip
    data = supporter_export_data(supporter=signature.supporter)
    assert data["actions_signed"][0]["action"] == "Protect civilians in El Fasher"
    assert data["partner_opt_ins"][0]["partner"] == "Aegis Trust"

    supporter_erase(supporter=signature.supporter)

    assert not PartnerConsent.objects.exists()
    signature.refresh_from_db()
    assert (signature.ip_address, signature.page_url, signature.partner_choices) == (None, "", [])
    assert "nadia@example.org" not in sync_rows(aegis)
