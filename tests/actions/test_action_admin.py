"""Actions in the admin: writing one with its co-sponsors, reading where signatures came
from, the CSV for the target, a segment of signers, and applying a partner's opt-out file."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.models import AuditEvent, PartnerOptOutFile, Segment
from mailings.actions import services
from mailings.actions.models import Action

pytestmark = pytest.mark.django_db


def test_campaign_manager_writes_an_action_with_a_cosponsor(client, campaign_user, interest, aegis):
    """The add page takes the text as blocks, the fields asked and each co-sponsor's own box."""
    client.force_login(campaign_user)
    assert client.get("/admin/actions/action/add/").status_code == 200
    response = client.post(
        "/admin/actions/action/add/",
        {
            "kind": "petition",
            "title": "Atrocity prevention strategy now",
            "slug": "strategy-now",
            "status": "open",
            "summary": "",
            "target": "The Prime Minister",
            "blocks": '[{"id": "a1", "type": "text", "html": "<p>Ask the PM.</p>"}]',
            "fields": ["first_name", "last_name", "postcode"],
            "goal": "5000",
            "button_label": "",
            "thank_you": "",
            "interests": [interest.pk],
            "opt_in_wording": "",
            "cosponsors-TOTAL_FORMS": "1",
            "cosponsors-INITIAL_FORMS": "0",
            "cosponsors-MIN_NUM_FORMS": "0",
            "cosponsors-MAX_NUM_FORMS": "1000",
            "cosponsors-0-partner": aegis.pk,
            "cosponsors-0-wording": "Yes, Aegis Trust may email me.",
            "cosponsors-0-privacy_url": "https://www.aegistrust.org/privacy/",
            "cosponsors-0-shared_fields": ["first_name"],
            "cosponsors-0-embed_origins": "https://www.aegistrust.org/\nnot a site",
        },
    )
    assert response.status_code == 200  # the bad origin is refused, with what to write
    assert "write each as https://www.example.org" in response.content.decode()
    assert not Action.objects.exists()


def test_action_page_in_admin_shows_sources_and_embedding(client, campaign_user, petition):
    """The change page breaks signatures down by source and partner and gives the embed code."""
    services.action_sign(action=petition, email="a@example.org", source="aegis")
    services.action_sign(action=petition, email="b@example.org", source="newsletter")
    services.action_sign(action=petition, email="c@example.org")
    client.force_login(campaign_user)
    page = client.get(f"/admin/actions/action/{petition.pk}/change/").content.decode()
    assert "<strong>3</strong> signatures" in page
    assert "Direct (no source)" in page and "newsletter" in page and "Aegis Trust" in page
    assert "/act/el-fasher/embed/?source=aegis" in page
    assert "https://www.aegistrust.org, https://aegis.example" in page


def test_target_csv_has_names_and_postcodes_never_emails(client, campaign_user, petition):
    """The hand-in file: names and postcodes in signing order, formulas made harmless."""
    services.action_sign(
        action=petition, email="nadia@example.org", first_name="Nadia", last_name="Hassan",
        postcode="E1 6AN",
    )  # fmt: skip
    services.action_sign(
        action=petition, email="evil@example.org", first_name="=cmd|' /C calc'!A0",
        last_name="-2+3", postcode="@SUM(1)",
    )  # fmt: skip
    client.force_login(campaign_user)
    response = client.get(f"/admin/actions/action/{petition.pk}/signatures.csv")
    text = response.content.decode("utf-8-sig")
    assert "@example.org" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["First name", "Last name", "Postcode", "Signed at"]
    assert rows[1][:3] == ["Nadia", "Hassan", "E1 6AN"]
    assert rows[2][:3] == ["'=cmd|' /C calc'!A0", "'-2+3", "'@SUM(1)"]
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert event.detail["rows"] == 2 and event.detail["action"] == "el-fasher"


def test_signers_become_a_static_segment_in_one_click(client, membership_user, petition):
    """Membership staff make a static segment of everyone who signed, by POST."""
    for email in ("a@example.org", "b@example.org"):
        services.action_sign(action=petition, email=email)
    client.force_login(membership_user)
    url = f"/admin/actions/action/{petition.pk}/segment/"
    assert "2 supporters" in client.get(url).content.decode()
    signers = Segment.objects.filter(name__startswith="Signed:")
    assert not signers.exists()
    response = client.post(url)
    segment = signers.get()
    assert response.url == f"/admin/crm/segment/{segment.pk}/change/"
    assert segment.kind == Segment.Kind.STATIC
    assert segment.name.startswith("Signed: Protect civilians in El Fasher")
    assert set(segment.members.values_list("email", flat=True)) == {
        "a@example.org",
        "b@example.org",
    }


def test_campaign_manager_cannot_make_segments(client, campaign_user, petition):
    """Making segments is membership staff's work."""
    client.force_login(campaign_user)
    assert client.post(f"/admin/actions/action/{petition.pk}/segment/").status_code == 403
    assert not Segment.objects.filter(name__startswith="Signed:").exists()


def test_staff_apply_a_partner_opt_out_file_and_download_its_receipt(
    client, membership_user, petition, aegis, settings
):
    """The add page applies the file; its receipt shows the counts and rows matching nobody."""
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    services.action_sign(action=petition, email="nadia@example.org", partner_opt_ins=["aegis"])
    client.force_login(membership_user)
    assert client.get(f"/admin/crm/partneroptoutfile/add/?partner={aegis.pk}").status_code == 200
    upload = SimpleUploadedFile(
        "aegis-unsubs.csv", b"email\nnadia@example.org\n=ghost@example.org\n", "text/csv"
    )
    response = client.post(
        "/admin/crm/partneroptoutfile/add/", {"partner": aegis.pk, "file": upload}
    )
    receipt = PartnerOptOutFile.objects.get()
    assert response.url == f"/admin/crm/partneroptoutfile/{receipt.pk}/change/"
    assert (receipt.file_name, receipt.matched, receipt.opt_ins_withdrawn) == (
        "aegis-unsubs.csv",
        1,
        1,
    )
    page = client.get(response.url).content.decode()
    assert "1 row (no supporter with that address" in page
    download = client.get(f"/admin/crm/partneroptoutfile/{receipt.pk}/unmatched.csv")
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert rows == [
        ["Row", "As sent", "Problem"],
        ["2", "'=ghost@example.org", "No supporter has this address"],
    ]


def test_supporter_timeline_shows_signatures_and_partner_opt_ins(
    client, membership_user, petition, settings
):
    """A supporter's page says which action they signed, through whom, and whom they opted in to."""
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    signature = services.action_sign(
        action=petition,
        email="nadia@example.org",
        source="aegis",
        partner_opt_ins=["aegis"],
    )
    client.force_login(membership_user)
    page = client.get(f"/admin/crm/supporter/{signature.supporter_id}/change/").content.decode()
    assert "Signed “Protect civilians in El Fasher”, through Aegis Trust" in page
    assert "Opted in to hear from Aegis Trust (shared: email address, first name" in page
