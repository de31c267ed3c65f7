"""An action page in headless Chromium: signed on a phone with two boxes ticked, framed by a
co-sponsor's site (and by no other), and its admin page. Set RALLY_SCREENSHOTS to a folder to
keep the pictures."""

import contextlib
import http.server
import os
import re
import threading
from pathlib import Path

import pytest
from django.core import mail

from crm.models import ConsentRecord, PartnerConsent, Subscription
from mailings.actions.models import Action, ActionPartner, Signature
from mailings.actions.views import memo
from tests import factories

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("tasks_run_now", "fresh_cache"),
]

TEXT = [
    {"id": "h1", "type": "text", "html": "<p>Satellite images and survivors' accounts show "
     "civilians being killed as they flee El Fasher. The UK holds the pen on Sudan at the UN "
     "Security Council.</p>"},
    {"id": "q1", "type": "quote", "html": "<p>Every day of delay costs lives.</p>",
     "cite": "A survivor"},
    {"id": "t2", "type": "text", "html": "<p>Ask the Foreign Secretary to press for the "
     "protection of civilians now.</p>"},
]  # fmt: skip


@pytest.fixture(autouse=True)
def _nothing_kept_from_other_tests():
    memo.clear()
    yield
    memo.clear()


@pytest.fixture
def shots(tmp_path):
    return Path(os.environ.get("RALLY_SCREENSHOTS") or tmp_path)


@pytest.fixture
def petition(db):
    interest = factories.CampaignInterestFactory(slug="r2p", name="Responsibility to Protect")
    aegis = factories.PartnerOrganisationFactory(slug="aegis", name="Aegis Trust")
    stand = factories.PartnerOrganisationFactory(slug="stand-uk", name="Stand UK")
    action = Action.objects.create(
        title="Protect civilians in El Fasher",
        slug="el-fasher",
        status=Action.Status.OPEN,
        summary="Tell the Foreign Secretary to act before it is too late.",
        target="The Foreign Secretary",
        blocks=TEXT,
        goal=10_000,
    )
    action.interests.add(interest)
    ActionPartner.objects.create(
        action=action,
        partner=aegis,
        wording="Yes, Aegis Trust may email me about its work to prevent genocide.",
        privacy_url="https://www.aegistrust.org/privacy/",
        shared_fields=["first_name", "last_name", "postcode"],
    )
    ActionPartner.objects.create(
        action=action,
        partner=stand,
        wording="Yes, Stand UK may email me about student campaigns.",
        privacy_url="https://stand.org.uk/privacy",
        shared_fields=["first_name"],
    )
    return action


@pytest.fixture
def phone(chromium, live_server, settings):
    """A 390 px phone screen on the live server."""
    from tests.browser.conftest import BrowserPage

    settings.SITE_URL = live_server.url
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    context.set_default_timeout(10_000)
    yield BrowserPage(context.new_page(), live_server.url)
    context.close()


def fits_the_screen(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_petition_signed_on_a_phone_with_our_box_and_one_partners(phone, petition, shots):
    """At 390 px: sign with the charity's box and Aegis Trust's ticked, confirm by email."""
    page = phone.page
    page.goto(f"{phone.base_url}/act/el-fasher/?source=aegis")
    page.get_by_role("heading", name="Protect civilians in El Fasher").wait_for()
    assert fits_the_screen(page)
    page.screenshot(path=shots / "action-page-390.png", full_page=True)

    page.get_by_label("First name").fill("Nadia")
    page.get_by_label("Last name").fill("Hassan")
    page.get_by_label("Email address").fill("nadia@example.org")
    page.get_by_label("Postcode").fill("e1 6an")
    page.get_by_label(re.compile("may email me about this campaign")).check()
    page.get_by_label(re.compile("Aegis Trust may email me")).check()
    page.get_by_role("button", name="Sign", exact=True).click()
    page.get_by_role("heading", name="Thank you, Nadia").wait_for()
    page.get_by_role("heading", name="One more step to hear from us").wait_for()
    assert fits_the_screen(page)
    page.screenshot(path=shots / "action-thanks-390.png", full_page=True)

    signature = Signature.objects.get()
    assert signature.source_partner.slug == "aegis"
    assert not Subscription.objects.exists()
    link = re.search(r"http\S+/act/confirm/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name=re.compile("^Thank you, that.s confirmed$")).wait_for()

    assert Subscription.objects.get().interest.slug == "r2p"
    assert ConsentRecord.objects.get().method == ConsentRecord.Method.ACTION_PAGE
    assert list(PartnerConsent.objects.values_list("partner__slug", flat=True)) == ["aegis"]
    assert phone.errors == []  # no Content-Security-Policy violations
    assert phone.external_requests() == []


@contextlib.contextmanager
def partner_site(embed_url):
    """A co-sponsor's page on another origin (127.0.0.1) that frames the action."""
    body = (
        "<!doctype html><title>Aegis Trust</title><h1>Aegis Trust</h1>"
        f'<iframe src="{embed_url}" title="Petition" width="400" height="900"></iframe>'
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_embed_is_framed_by_a_listed_cosponsor_and_signs_inside_the_frame(
    chromium, live_server, petition
):
    """A listed co-sponsor's site shows the form in a frame; an unlisted one gets nothing."""
    embed = f"{live_server.url}/act/el-fasher/embed/?source=aegis"
    with partner_site(embed) as origin:
        # Each visit in a browser of its own: the page may be cached for a few seconds.
        unlisted = chromium.new_context()
        page = unlisted.new_page()
        page.goto(origin)
        page.wait_for_load_state("networkidle")
        frame = page.frame_locator("iframe")
        assert frame.get_by_role("heading", name="Sign the petition").count() == 0
        unlisted.close()

        ActionPartner.objects.filter(partner__slug="aegis").update(embed_origins=origin)
        memo.clear()
        listed = chromium.new_context()
        listed.set_default_timeout(10_000)
        page = listed.new_page()
        page.goto(origin)
        frame = page.frame_locator("iframe")
        frame.get_by_label("Email address").fill("omar@example.org")
        frame.get_by_label("First name").fill("Omar")
        frame.get_by_label("Last name").fill("Farah")
        frame.get_by_label("Postcode").fill("N1 9GU")
        frame.get_by_role("button", name="Sign", exact=True).click()
        frame.get_by_role("heading", name="Thank you, Omar").wait_for()
        listed.close()
    assert Signature.objects.get().source == "aegis"


def test_action_admin_page_for_staff(browser_page, petition, superuser, shots):
    """The action's admin page at 1280 px loads its composer and results under the admin's CSP."""
    from mailings.actions import services

    for n, source in enumerate(["aegis"] * 3 + ["stand-uk", "newsletter", ""]):
        services.action_sign(action=petition, email=f"s{n}@example.org", source=source)
    page = browser_page.page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{browser_page.base_url}/admin/actions/action/{petition.pk}/change/")
    page.get_by_role("heading", name="Where signatures came from").wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=shots / "action-admin-1280.png", full_page=True)
    page.locator(".action-results").screenshot(path=shots / "action-admin-results-1280.png")
    page.goto(f"{browser_page.base_url}/act/el-fasher/")
    page.screenshot(path=shots / "action-page-1280.png", full_page=True)
    assert browser_page.errors == []


def test_staff_apply_a_partners_opt_out_file_from_its_page(
    browser_page, petition, superuser, shots, tmp_path, settings
):
    """From the partner's page: choose the file, apply it, read the receipt (1280 px)."""
    from mailings.actions import services

    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    services.action_sign(action=petition, email="nadia@example.org", partner_opt_ins=["aegis"])
    optouts = tmp_path / "aegis-unsubscribes.csv"
    optouts.write_text("Email,Date\nnadia@example.org,2026-12-01\nghost@example.org,2026-12-02\n")
    page = browser_page.page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{browser_page.base_url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    aegis = petition.partners.get(slug="aegis")
    page.goto(f"{browser_page.base_url}/admin/crm/partnerorganisation/{aegis.pk}/change/")
    page.get_by_role("link", name="Apply their opt-out file…").click()
    page.get_by_label("Opt-out file").set_input_files(str(optouts))
    page.screenshot(path=shots / "optout-apply-1280.png", full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("Applied: 1 of the 1 people matched").wait_for()
    page.screenshot(path=shots / "optout-receipt-1280.png", full_page=True)
    assert page.get_by_role("link", name="Download them (CSV)").count() == 1
    assert browser_page.errors == []
