"""Newsletters on the web: the "view in your browser" copy and the archive (/newsletters/)."""

import pytest
from django.utils import timezone

from mailings.models import Mailing
from tests.factories import DeliveryFactory, MailingFactory

pytestmark = pytest.mark.django_db

PERSONAL = [
    {"id": "h", "type": "heading", "level": 1, "text": "Stand with Sudan"},
    {
        "id": "t",
        "type": "text",
        "html": '<p>Dear {{ first_name|default:"friend" }} {{ last_name }} of {{ postcode }},</p>'
        '<p>You signed up as {{ email }}. <a href="{{ preferences_url }}">Your choices</a>.</p>',
    },
    {"id": "b", "type": "button", "label": "Leave the list", "url": "{{ unsubscribe_url }}"},
    {"id": "p", "type": "button", "label": "Sign the petition", "url": "https://example.org/sign"},
]


def _sent(**kwargs):
    mailing = MailingFactory(**kwargs)
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT, started_at=timezone.now(), finished_at=timezone.now()
    )
    mailing.refresh_from_db()
    return mailing


def test_web_copy_shows_the_newsletter_without_personal_data(client, supporter):
    """Merge fields show their fallback; no name, address, token or personal link is on the page."""
    mailing = _sent(subject='News for {{ first_name|default:"you" }}', blocks=PERSONAL)
    DeliveryFactory(mailing=mailing, supporter=supporter, status="sent")

    response = client.get(f"/newsletters/{mailing.public_id}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Stand with Sudan" in page
    assert "Dear friend" in page
    assert "News for you" in page
    assert 'href="https://example.org/sign"' in page
    personal = ["Alice", "alice@example.org", supporter.postcode or "Alice", "{{", "/unsubscribe/"]
    for value in personal:
        assert value not in page, value
    assert "/preferences/" in page  # the page that emails a fresh link, and only that
    assert 'href="/preferences/"' in page
    assert "Leave the list" not in page  # a personal-link button has no place here
    # No tracking: nothing from elsewhere but the newsletter's own images, no scripts.
    assert "<script" not in page
    assert "script-src" not in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_unknown_web_copy_is_not_found(client):
    """An id nobody was sent answers 404, as does a cancelled newsletter's."""
    assert client.get("/newsletters/not-a-real-id/").status_code == 404
    cancelled = MailingFactory(status=Mailing.Status.CANCELLED)
    assert client.get(f"/newsletters/{cancelled.public_id}/").status_code == 404


def test_archive_lists_only_sent_newsletters_chosen_for_it(client):
    """Sent and in_archive: listed, newest first. Not chosen, or not yet sent: not listed."""
    listed = _sent(subject="Inside the Security Council debate", in_archive=True)
    _sent(subject="Members only: lobby day logistics", in_archive=False)
    MailingFactory(subject="Draft: next month", in_archive=True)

    response = client.get("/newsletters/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Inside the Security Council debate" in page
    assert f'href="/newsletters/{listed.public_id}/"' in page
    assert "lobby day" not in page
    assert "Draft: next month" not in page


def test_sign_up_page_links_to_the_archive_once_there_is_one(client):
    """/join/ offers past newsletters only when at least one is in the archive."""
    assert "/newsletters/" not in client.get("/join/").content.decode()
    _sent(in_archive=True)
    assert 'href="/newsletters/"' in client.get("/join/").content.decode()


def test_uploaded_image_is_served_and_other_names_are_not(client, admin_client):
    """An image uploaded in the composer is public at its random address; made-up names 404."""
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = admin_client.post(
        "/admin/mailings/mailing/composer/upload/",
        {"image": SimpleUploadedFile("vigil.png", png, content_type="image/png")},
    )
    assert upload.status_code == 200
    src = upload.json()["src"]
    assert src.startswith("/newsletters/images/") and src.endswith(".png")

    image = client.get(src)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == png
    assert client.get("/newsletters/images/..%2Fsecret.png").status_code == 404
    assert client.get("/newsletters/images/nothing-here-123.png").status_code == 404


def test_upload_refuses_what_is_not_an_image(admin_client, client):
    """A file that is not PNG, JPEG or GIF is refused, saying why; no one logged out may upload."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    fake = SimpleUploadedFile("x.png", b"<svg onload=alert(1)>", content_type="image/png")
    response = admin_client.post("/admin/mailings/mailing/composer/upload/", {"image": fake})
    assert response.status_code == 400
    assert "PNG, JPEG or GIF" in response.json()["error"]
    anonymous = client.post("/admin/mailings/mailing/composer/upload/", {"image": fake})
    assert anonymous.status_code == 302  # to the login page
