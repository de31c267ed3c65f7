"""The site's home page at /, the admin's "View site" link to it, and the favicon."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


def test_home_page_offers_to_join_and_to_manage_your_choices(client, interest):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<a class="button" href="/join/">Join the mailing list</a>' in html
    assert 'href="/preferences/">Manage your email choices</a>' in html
    assert "Responsibility to Protect" in html
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_view_site_in_the_admin_leads_to_the_home_page(client, membership_user):
    client.force_login(membership_user)
    admin_page = client.get("/admin/").content.decode()

    [view_site] = re.findall(r'<a href="([^"]*)">View site</a>', admin_page)

    assert view_site == "/"
    assert client.get(view_site).status_code == 200


def test_favicon_ico_leads_to_the_icon_and_pages_name_it():
    response = Client().get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/supporters/favicon.svg"
    assert finders.find("supporters/favicon.svg") is not None
    icon = '<link rel="icon" href="/static/supporters/favicon.svg" type="image/svg+xml">'
    assert icon in Client().get("/join/").content.decode()
    assert icon in Client().get("/admin/login/").content.decode()
