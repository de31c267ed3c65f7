"""Test sends go only to staff accounts' addresses and the allow-list, and say why when they fail.

A test may carry any supporter's details merged in, so it must not reach an
outside inbox; and a first run's test send reaches the demo admin.
"""

import io

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from crm.management.commands.ensure_admin import DEMO_EMAIL
from mailings import forms, services

pytestmark = pytest.mark.django_db


def send_url(mailing):
    return reverse("admin:mailings_mailing_test", args=[mailing.pk])


@pytest.fixture
def manager(client, campaign_user):
    client.force_login(campaign_user)
    return client


def test_a_colleagues_address_is_allowed(manager, newsletter, campaign_user, membership_user):
    response = manager.post(send_url(newsletter), {"also_to": membership_user.email.upper()})

    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [campaign_user.email, membership_user.email.upper()]
    )


def test_an_outside_address_is_refused_by_name_and_nothing_is_sent(
    manager, newsletter, supporter, django_user_model
):
    django_user_model.objects.create_user(
        username="gone", email="former@rally.example.org", is_staff=True, is_active=False
    )
    django_user_model.objects.create_user(username="friend", email="friend@example.net")
    typed = "outsider@example.com\nformer@rally.example.org\nfriend@example.net"

    response = manager.post(send_url(newsletter), {"also_to": typed, "supporter": supporter.email})

    assert response.status_code == 200
    content = response.content.decode()
    assert (
        "Not sent: outsider@example.com, former@rally.example.org, friend@example.net are not "
        "staff addresses or allowed for tests (RALLY_TEST_SEND_ALLOWED)."
    ) in content
    assert typed in content  # what was typed is still in the box
    assert supporter.email in content
    assert mail.outbox == []


def test_the_allow_list_admits_addresses_and_whole_domains(manager, newsletter, settings):
    settings.RALLY_TEST_SEND_ALLOWED = ["Seeds@Inbox-Preview.example", "@litmus.example"]

    response = manager.post(
        send_url(newsletter), {"also_to": "seeds@inbox-preview.example\nx7@litmus.example"}
    )

    assert response.status_code == 302
    assert {m.to[0] for m in mail.outbox} >= {"seeds@inbox-preview.example", "x7@litmus.example"}


def test_the_service_refuses_outside_addresses_whatever_calls_it(newsletter, campaign_user):
    with pytest.raises(services.MailingRefused, match=r"not to someone@example\.org"):
        services.mailing_send_test(
            mailing=newsletter, to=[campaign_user.email, "someone@example.org"]
        )
    assert mail.outbox == []


def test_the_form_says_who_may_receive_tests():
    assert "only to staff accounts' addresses" in str(forms.TestSendForm()["also_to"].help_text)


# -- the first run: the demo admin and a real ESP call -------------------------------------


@pytest.fixture
def demo_admin(settings, tmp_path, django_user_model):
    settings.VAR_DIR = tmp_path
    call_command("ensure_admin", stdout=io.StringIO())
    return django_user_model.objects.get(username="admin")


def test_the_demo_admins_test_send_reaches_the_mail_sink(
    client, demo_admin, newsletter, postmark_esp
):
    """As on a first run of `make run`: the sink, like Postmark, accepts the demo address."""
    assert demo_admin.email == DEMO_EMAIL
    client.force_login(demo_admin)

    response = client.post(send_url(newsletter), {"also_to": ""})

    assert response.status_code == 302
    assert [r.address for r in postmark_esp.messages()] == [DEMO_EMAIL]


def test_an_old_demo_admin_address_is_mended(settings, tmp_path, django_user_model):
    settings.VAR_DIR = tmp_path
    (tmp_path / "admin-credentials.txt").write_text("pw\n")
    django_user_model.objects.create_superuser("admin", "admin@localhost", "pw")

    call_command("ensure_admin", stdout=io.StringIO())

    assert django_user_model.objects.get(username="admin").email == DEMO_EMAIL


def test_an_address_the_esp_refuses_is_named_and_the_form_keeps_what_was_typed(
    client, superuser, newsletter, postmark_esp, settings, django_user_model
):
    settings.RALLY_TEST_SEND_ALLOWED = ["outlook.test@example.net"]
    superuser.email = "root@localhost"  # a staff address, but no ESP takes it
    superuser.save()
    client.force_login(superuser)

    response = client.post(
        send_url(newsletter), {"also_to": "outlook.test@example.net", "supporter": ""}
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "The test could not be sent to root@localhost: The ESP refused the recipient" in content
    assert "It was sent to outlook.test@example.net." in content
    assert "outlook.test@example.net</textarea>" in content
    assert [r.address for r in postmark_esp.messages()] == ["outlook.test@example.net"]
