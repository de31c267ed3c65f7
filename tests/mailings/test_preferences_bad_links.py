"""A tampered, unknown or revoked link gets a friendly page with a way to a fresh link."""

import pytest
from django.urls import reverse

from crm import services
from mailings import tokens

pytestmark = pytest.mark.django_db


def bad_tokens(supporter):
    good = tokens.make_preferences_token(supporter)
    return [good[:-3] + "abc", "eyJzIjo5OTk5LCJ2IjoxfQ:1abc:forged", "..", "%00", "x" * 300]


@pytest.mark.parametrize("name", ["preferences", "preferences-unsubscribe-all", "unsubscribe"])
def test_bad_token_gets_the_friendly_page_on_get_and_post(client, supporter, name):
    for token in bad_tokens(supporter):
        for method in (client.get, client.post):
            response = method(reverse(name, args=[token]))
            html = response.content.decode()
            assert response.status_code == 404
            assert "This link no longer works" in html
            assert 'action="/preferences/"' in html
            assert "Email me a fresh link" in html


def without_csrf(response):
    lines = response.content.decode().splitlines()
    return [line for line in lines if "csrfmiddlewaretoken" not in line]


def test_revoked_link_gets_the_same_page_as_a_forged_one(client, supporter):
    token = tokens.make_preferences_token(supporter)
    services.supporter_revoke_links(supporter=supporter)
    revoked = client.get(f"/preferences/{token}/")
    forged = client.get("/preferences/forged/")
    assert revoked.status_code == forged.status_code == 404
    assert without_csrf(revoked) == without_csrf(forged)
    assert "alice" not in revoked.content.decode().lower()


def test_staff_revoke_button_kills_the_supporters_links(admin_client, supporter):
    token = tokens.make_preferences_token(supporter)
    page = admin_client.get(reverse("admin:crm_supporter_change", args=[supporter.pk]))
    revoke_url = reverse("admin:crm_supporter_revoke_links", args=[supporter.pk])
    assert revoke_url in page.content.decode()

    admin_client.post(revoke_url)

    assert admin_client.get(f"/preferences/{token}/").status_code == 404
