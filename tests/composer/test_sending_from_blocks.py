"""A newsletter written in blocks is sent through the real sending path, personalised."""

import pytest
from django.core import mail

from crm.models import AuditEvent
from mailings import services
from mailings.exceptions import MailingRefused
from mailings.models import Mailing
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

NO_ALT = {"id": "pic", "type": "image", "src": "https://example.org/a.png", "width": 300}


@pytest.fixture
def send_now(tasks_run_now, django_capture_on_commit_callbacks):
    def send(mailing, user):
        with django_capture_on_commit_callbacks(execute=True):
            services.mailing_send_now(mailing=mailing, actor=user)

    return send


@pytest.fixture
def untitled_picture(interest):
    """A newsletter whose image has no alt text."""
    newsletter = MailingFactory(interests=[interest])
    newsletter.blocks = [*newsletter.blocks, NO_ALT]
    newsletter.save()
    return newsletter


def test_merge_fields_are_filled_per_recipient(interest, campaign_user, send_now):
    newsletter = MailingFactory(
        interests=[interest],
        blocks=[
            {"type": "heading", "level": 1, "text": 'Dear {{ first_name|default:"friend" }}'},
            {
                "type": "text",
                "html": '<p>In {{ postcode }}: <a href="{{ preferences_url }}">choose what '
                "you hear about</a></p>",
            },
            {"type": "button", "label": "Sign", "url": "https://example.org/sign"},
        ],
    )
    SupporterFactory(
        email="amara@example.org", first_name="Amara", postcode="EH1 1AA", subscribed_to=[interest]
    )
    SupporterFactory(email="anon@example.org", first_name="", subscribed_to=[interest])

    send_now(newsletter, campaign_user)

    by_address = {m.to[0].split("<")[-1].rstrip(">"): m for m in mail.outbox}
    amara, anon = by_address["amara@example.org"], by_address["anon@example.org"]
    amara_html = amara.alternatives[0][0]
    assert "Dear Amara</h1>" in amara_html and "In EH1 1AA:" in amara_html
    assert "Dear friend</h1>" in anon.alternatives[0][0]
    assert "Dear Amara\n==========" in amara.body
    assert "Sign: https://example.org/sign" in amara.body
    assert 'href="https://rally.example.org/preferences/' in amara_html
    assert "{{" not in amara_html and "{{" not in amara.body
    assert f"/newsletters/{newsletter.public_id}/" in amara_html


def test_sending_is_refused_while_an_image_has_no_alt_text(untitled_picture, campaign_user):
    with pytest.raises(MailingRefused, match=r"Block 3 \(image\): The image has no alt text"):
        services.mailing_send_now(mailing=untitled_picture, actor=campaign_user)

    untitled_picture.refresh_from_db()
    assert untitled_picture.status == Mailing.Status.DRAFT


def test_scheduling_is_refused_too(untitled_picture, campaign_user):
    from django.utils import timezone

    with pytest.raises(MailingRefused, match="accessibility check"):
        services.mailing_schedule(
            mailing=untitled_picture,
            send_at=timezone.now() + timezone.timedelta(days=1),
            actor=campaign_user,
        )


def test_a_test_send_is_never_refused_for_the_check(untitled_picture, campaign_user):
    sent = services.mailing_send_test(mailing=untitled_picture, to=[campaign_user.email])

    assert sent == 1
    assert mail.outbox[0].subject.startswith("[Test] ")


def test_sending_is_allowed_after_an_audited_override(
    untitled_picture, campaign_user, send_now, supporter
):
    services.mailing_override_checks(mailing=untitled_picture, actor=campaign_user)

    event = AuditEvent.objects.get(kind=AuditEvent.Kind.CHECKS_OVERRIDDEN)
    assert event.actor == campaign_user
    assert event.detail["mailing_id"] == untitled_picture.pk
    assert [p["code"] for p in event.detail["problems"]] == ["image_alt"]
    untitled_picture.refresh_from_db()
    assert untitled_picture.checks_overridden_by == campaign_user
    send_now(untitled_picture, campaign_user)
    untitled_picture.refresh_from_db()
    assert untitled_picture.status == Mailing.Status.SENT
    assert len(mail.outbox) == 1


def test_only_staff_who_may_send_can_override(untitled_picture, membership_user):
    with pytest.raises(MailingRefused, match="Only staff who may send"):
        services.mailing_override_checks(mailing=untitled_picture, actor=membership_user)

    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.CHECKS_OVERRIDDEN).exists()


def test_an_override_cannot_send_what_cannot_be_built(interest, campaign_user):
    broken = MailingFactory(
        interests=[interest], blocks=[{"type": "text", "html": "<p>{{ nickname }}</p>"}]
    )

    with pytest.raises(MailingRefused, match="cannot be sent as it is"):
        services.mailing_override_checks(mailing=broken, actor=campaign_user)


def test_a_test_send_of_blocks_that_cannot_be_built_says_why(interest, campaign_user):
    broken = MailingFactory(interests=[interest])
    Mailing.objects.filter(pk=broken.pk).update(blocks=[{"type": "button", "label": "Go"}])
    broken.refresh_from_db()

    with pytest.raises(MailingRefused, match=r"Block 1 \(button\): the button needs a link"):
        services.mailing_send_test(mailing=broken, to=[campaign_user.email])
    assert mail.outbox == []


def test_a_changed_footer_reaches_the_messages_prepared_after_it(interest):
    """A worker keeps a mailing compiled, but not past a change to its email template."""
    from mailings import emails
    from mailings.models import EmailTemplate

    template = EmailTemplate.objects.create(name="Ours", postal_address="1 Old Street, London")
    mailing = MailingFactory(template=template)
    mailing.interests.add(interest)
    supporter = SupporterFactory()

    before = emails.prepare(mailing).message(supporter).alternatives[0][0]
    template.postal_address = "2 New Road, Leeds"
    template.save()
    after = emails.prepare(mailing).message(supporter).alternatives[0][0]

    assert "1 Old Street" in before
    assert "2 New Road" in after
