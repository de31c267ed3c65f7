"""An http SITE_URL is a calm note in development and a warning in production.

`make run` serves http://localhost:8000, so every development run would
otherwise show staff a red warning about it on every mailing.
"""

import pytest
from django.urls import reverse

from mailings import emails

pytestmark = pytest.mark.django_db

NOTE = "Development: links in emails start with SITE_URL, http://localhost:8000."
WARNING = "No one-click unsubscribe is possible: SITE_URL is http://localhost:8000"


@pytest.fixture
def manager(client, campaign_user):
    client.force_login(campaign_user)
    return client


def _pages(manager, mailing):
    return [
        manager.get(reverse(f"admin:mailings_mailing_{name}", args=[mailing.pk])).content.decode()
        for name in ("change", "preview")
    ]


def test_in_development_an_http_site_url_is_a_note_not_a_warning(settings, manager, newsletter):
    settings.DEBUG = True
    settings.SITE_URL = "http://localhost:8000"

    assert emails.content_warnings(newsletter) == []
    for page in _pages(manager, newsletter):
        assert f'<p class="help">{NOTE}' in page
        assert WARNING not in page


def test_in_production_an_http_site_url_is_a_warning(settings, manager, newsletter):
    settings.DEBUG = False
    settings.SITE_URL = "http://localhost:8000"

    assert any(warning.startswith(WARNING) for warning in emails.content_warnings(newsletter))
    for page in _pages(manager, newsletter):
        assert WARNING in page
        assert NOTE not in page


def test_an_https_site_url_brings_neither(settings, newsletter):
    settings.DEBUG = True

    assert settings.SITE_URL.startswith("https://")
    assert emails.content_notes(newsletter) == emails.content_warnings(newsletter) == []
