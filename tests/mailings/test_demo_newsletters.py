"""seed_demo adds newsletters a newcomer can preview, test-send and read a report of."""

import pytest
from django.core.management import call_command

from mailings import emails, reports
from mailings.composer import checks
from mailings.models import EmailTemplate, Mailing

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    call_command("seed_demo", supporters=400, verbosity=0)


def test_demo_has_drafts_a_scheduled_and_a_sent_newsletter(demo):
    newsletters = Mailing.objects.filter(kind=Mailing.Kind.NEWSLETTER)
    statuses = sorted(newsletters.values_list("status", flat=True))

    assert statuses == ["draft", "scheduled", "sent"]
    subjects = " ".join(newsletters.values_list("subject", flat=True))
    assert "duty to prevent atrocities" in subjects
    assert "write to your MP" in subjects
    assert "Security Council" in subjects


def test_demo_drafts_render_without_problems(demo):
    for mailing in Mailing.objects.exclude(status="sent"):
        assert emails.content_warnings(mailing) == []
        assert mailing.audience().exists()
        emails.PreparedMailing(mailing)  # merge fields all known


def test_demo_newsletters_pass_the_accessibility_check(demo):
    """Each is written in blocks, with a picture, a button or action box, and no problems."""
    for mailing in Mailing.objects.all():
        assert checks.check_mailing(mailing) == [], mailing.name
    kinds = {block["type"] for m in Mailing.objects.all() for block in m.blocks}
    assert {"heading", "text", "image", "button", "quote", "action", "columns"} <= kinds
    assert EmailTemplate.objects.default().postal_address


def test_demo_picture_is_served(demo, client):
    image = next(
        block for m in Mailing.objects.all() for block in m.blocks if block["type"] == "image"
    )

    response = client.get(image["src"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_sent_demo_newsletter_is_in_the_archive(demo, client):
    mailing = Mailing.objects.get(status="sent")

    assert mailing.in_archive is True
    assert client.get(f"/newsletters/{mailing.public_id}/").status_code == 200


def test_sent_demo_newsletter_has_a_report(demo):
    mailing = Mailing.objects.get(status="sent")

    figures = reports.report(mailing)["figures"]

    assert figures["recipients"] == mailing.recipient_count > 0
    assert figures["delivered"] > figures["opened"] > figures["clicked"] > 0
    assert figures["bounced"] > 0
    assert figures["unsubscribed"] > 0
    assert reports.chart(mailing).empty is False


def test_seeding_again_adds_no_second_copy(demo):
    count = Mailing.objects.count()

    call_command("seed_demo", supporters=10, verbosity=0)

    assert Mailing.objects.count() == count
    assert Mailing.objects.filter(kind=Mailing.Kind.NEWSLETTER).count() == 3
