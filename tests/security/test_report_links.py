"""The mailing report links only web addresses; any other clicked URL shows as inert text.

The URL of a click comes from the ESP's event, so whoever can get a link into
a newsletter or reach the webhook chooses it: a javascript: URL made into a
link would run in the admin session of the staff member who clicks it.
"""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import DeliveryEvent, Mailing
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

HOSTILE = [
    "javascript:fetch('/admin/auth/user/')",
    "JavaScript:alert(document.cookie)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/",
]


def _clicked(mailing, url, n):
    delivery = DeliveryFactory(mailing=mailing, status="sent", clicked_at=timezone.now())
    DeliveryEvent.objects.create(
        delivery=delivery,
        mailing=mailing,
        esp_name="Postmark",
        dedupe_key=f"click-{n}",
        event_type="clicked",
        timestamp=timezone.now(),
        url=url,
    )


def test_report_shows_a_javascript_click_as_inert_text(client, superuser, newsletter):
    """Only http(s) clicks become links; the others are listed, escaped, without an href."""
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.SENT,
        recipient_count=len(HOSTILE) + 1,
        started_at=timezone.now() - datetime.timedelta(hours=1),
    )
    for n, url in enumerate(HOSTILE):
        _clicked(newsletter, url, n)
    _clicked(newsletter, "https://example.org/strategy", 99)
    client.force_login(superuser)

    page = client.get(reverse("admin:mailings_mailing_report", args=[newsletter.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    hrefs = [chunk.split('"', 1)[0] for chunk in html.split('href="')[1:]]
    # Links lead to this site (the people who clicked a URL: the URL travels, encoded,
    # in the query) or to a web address; nothing else becomes an href.
    assert hrefs
    assert not [
        href
        for href in hrefs
        if href.startswith("//") or not href.startswith(("/", "#", "http://", "https://"))
    ]
    assert not [href for href in hrefs if href.startswith("http") and "script" in href.lower()]
    assert "//evil.example/" not in hrefs
    assert '<a href="https://example.org/strategy" rel="noopener noreferrer">' in html
    assert "javascript:fetch(&#x27;/admin/auth/user/&#x27;)" in html
    assert "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("not a web address, so not linked") == len(HOSTILE)
