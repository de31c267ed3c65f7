"""The public sign-up form: interests, versioned wording, honeypot, embeddable."""

import pytest

from mailings import selfservice
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


def test_form_asks_for_email_name_postcode_and_public_interests(client, interest, other_interest):
    factories.CampaignInterestFactory(slug="internal", name="Trustees only", is_public=False)

    html = client.get("/join/").content.decode()

    for label in ("Email address", "First name", "Last name", "Postcode"):
        assert f"{label}" in html
    assert 'autocomplete="email"' in html
    assert 'autocomplete="postal-code"' in html
    assert 'id="interest-r2p"' in html
    assert 'id="interest-events"' in html
    assert "Trustees only" not in html
    assert selfservice.wording("signup")[0] in html


def test_wording_version_follows_the_text_unless_set(settings):
    settings.RALLY_SIGNUP_WORDING = "Email me, {site_name}."
    settings.RALLY_SIGNUP_WORDING_VERSION = ""
    text, version = selfservice.wording("signup")
    assert text == "Email me, Rally."
    assert version.startswith("sha256:")
    settings.RALLY_SIGNUP_WORDING = "Email me often, {site_name}."
    assert selfservice.wording("signup")[1] != version
    settings.RALLY_SIGNUP_WORDING_VERSION = "2025-03"
    assert selfservice.wording("signup")[1] == "2025-03"


def test_honeypot_is_hidden_from_people_and_assistive_technology(client, interest):
    html = client.get("/join/").content.decode()
    assert '<div class="honeypot" aria-hidden="true">' in html
    assert 'name="website" id="id_website" value="" tabindex="-1" autocomplete="off"' in html


def test_form_can_be_embedded_in_a_frame_on_the_charitys_site(client, interest, settings):
    settings.RALLY_SIGNUP_FRAME_ANCESTORS = ["https://www.example-charity.org.uk"]
    for response in (
        client.get("/join/"),
        client.post("/join/", {"email": "x@example.org", "interests": ["r2p"]}),
    ):
        assert "X-Frame-Options" not in response
        assert (
            "frame-ancestors https://www.example-charity.org.uk"
            in response["Content-Security-Policy"]
        )


def test_other_supporter_pages_cannot_be_framed(client):
    response = client.get("/preferences/")
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_invalid_input_gets_clear_messages_and_sends_nothing(client, interest, mailoutbox):
    response = client.post("/join/", {"email": "not-an-address", "first_name": "N"})
    html = response.content.decode()
    assert "There is a problem" in html
    assert "Enter an email address like name@example.org." in html
    assert "Choose at least one topic to hear about." in html
    assert 'value="N"' in html
    assert mailoutbox == []


def test_missing_address_is_asked_for(client, interest, mailoutbox):
    response = client.post("/join/", {"interests": ["r2p"]})
    assert '<a href="#id_email">Enter your email address.</a>' in response.content.decode()
    assert mailoutbox == []


def test_unknown_interest_is_refused(client, interest, mailoutbox):
    response = client.post("/join/", {"email": "a@example.org", "interests": ["nope"]})
    assert "Select a valid choice" in response.content.decode()
    assert mailoutbox == []
