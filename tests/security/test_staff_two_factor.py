"""Staff named by RALLY_STAFF_2FA need a code from an authenticator app to use the admin.

"superusers" (the production default): superusers give a TOTP code after their
password; "staff": everyone who can open the admin does; "off": the password
is enough. Someone who must use a code but has no device enrols after their
password: a QR code, then their first code, then the admin. Until then no
admin page opens.
"""

import re

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
TWO_FACTOR = "/admin/two-factor/"


def code_for(device, offset=0):
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += offset * device.step
    return f"{totp.token():0{device.digits}d}"


def logged_in_with_password(username):
    client = Client()
    response = client.post(LOGIN, {"username": username, "password": "pw", "next": "/admin/"})
    return client, response


def admin_pages_open(client):
    return all(
        client.get(url).status_code == 200
        for url in ("/admin/", "/admin/crm/supporter/", "/admin/auth/user/")
    )


@pytest.fixture
def phone(superuser):
    """Root's authenticator app, already set up."""
    return TOTPDevice.objects.create(user=superuser, name="Phone", confirmed=True)


@pytest.fixture(autouse=True)
def _two_factor_for_superusers(settings):
    settings.RALLY_STAFF_2FA = "superusers"


def test_superuser_with_password_only_cannot_open_any_admin_page(phone):
    """After the password the code is asked for; every admin page sends back to it."""
    client, response = logged_in_with_password("root")

    assert response.status_code == 302
    assert response.url == f"{TWO_FACTOR}?next=/admin/"
    for url in ("/admin/", "/admin/crm/supporter/", "/admin/auth/user/add/"):
        page = client.get(url, follow=True)
        assert page.redirect_chain[-1][0].startswith(TWO_FACTOR), url
        assert "6-digit code" in page.content.decode()
    assert client.post("/admin/auth/user/add/", {"username": "x"}).status_code == 302


def test_force_login_alone_is_not_enough_either(superuser):
    """A session without the second factor, however it was made, reaches no admin page."""
    client = Client()
    client.force_login(superuser)

    assert client.get("/admin/").status_code == 302


def test_the_right_code_lets_the_superuser_in(phone):
    """Password, then the code from the app, then the page asked for."""
    client, _ = logged_in_with_password("root")

    response = client.post(TWO_FACTOR, {"token": code_for(phone), "next": "/admin/"})

    assert response.status_code == 302
    assert response.url == "/admin/"
    assert admin_pages_open(client)


def test_a_wrong_or_old_code_is_refused(phone):
    """A code from five minutes ago, or a made-up one, opens nothing."""
    client, _ = logged_in_with_password("root")

    for token in ("000000", code_for(phone, offset=-10)):
        response = client.post(TWO_FACTOR, {"token": token})
        assert response.status_code == 200
        assert "That code is not right" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_code_is_no_use_without_the_password(phone):
    """The code page is only for someone whose password was right."""
    client = Client()

    response = client.post(TWO_FACTOR, {"token": code_for(phone)})

    assert response.status_code == 302
    assert response.url.startswith(LOGIN)
    assert client.get("/admin/").status_code == 302


def test_a_superuser_without_a_device_enrols_then_gets_in(superuser):
    """The page shows a QR code and a key; the first code confirms the device and lets them in."""
    client, response = logged_in_with_password("root")
    page = client.get(response.url)

    html = page.content.decode()
    assert "Set up two-factor login" in html
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', html)
    device = TOTPDevice.objects.get(user=superuser)
    assert device.confirmed is False
    assert client.get("/admin/").status_code == 302

    response = client.post(TWO_FACTOR, {"token": code_for(device), "next": "/admin/"})

    assert response.url == "/admin/"
    device.refresh_from_db()
    assert device.confirmed is True
    assert admin_pages_open(client)
    # Next time the code is asked for, not a new QR code.
    client, response = logged_in_with_password("root")
    assert "Set up two-factor login" not in client.get(response.url).content.decode()


def test_enrolment_shows_the_same_qr_code_until_confirmed(superuser):
    """Reloading the page does not change the key the app was given."""
    client, response = logged_in_with_password("root")
    qr = re.compile(r'<img src="(data:[^"]+)"')
    first = qr.search(client.get(response.url).content.decode())[1]
    second = qr.search(client.get(response.url).content.decode())[1]

    assert first == second
    assert TOTPDevice.objects.filter(user=superuser).count() == 1


def test_superusers_mode_leaves_other_staff_with_their_password(membership_user):
    """By default only superusers need the code."""
    client, response = logged_in_with_password("maya")

    assert response.url == "/admin/"
    assert client.get("/admin/crm/supporter/").status_code == 200


def test_staff_mode_applies_to_every_staff_member(settings, membership_user):
    """RALLY_STAFF_2FA=staff: a member of staff without a superuser's rights needs the code too."""
    settings.RALLY_STAFF_2FA = "staff"
    client, response = logged_in_with_password("maya")

    assert response.url.startswith(TWO_FACTOR)
    assert client.get("/admin/crm/supporter/").status_code == 302
    assert "Set up two-factor login" in client.get(response.url).content.decode()
    device = TOTPDevice.objects.get(user=membership_user)
    client.post(TWO_FACTOR, {"token": code_for(device)})
    assert client.get("/admin/crm/supporter/").status_code == 200


def test_off_mode_lets_staff_in_with_their_password(settings, superuser):
    """RALLY_STAFF_2FA=off (the development default): no code, no enrolment."""
    settings.RALLY_STAFF_2FA = "off"
    client, response = logged_in_with_password("root")

    assert response.url == "/admin/"
    assert admin_pages_open(client)
    assert not TOTPDevice.objects.exists()


def test_log_out_from_the_code_page(phone):
    """Someone without their phone can leave the half-finished login."""
    client, _ = logged_in_with_password("root")

    response = client.post(TWO_FACTOR, {"log_out": "1"})

    assert response.url == LOGIN
    assert "_auth_user_id" not in client.session


def test_the_code_page_sends_nobody_to_another_site(phone):
    """A next= pointing elsewhere is dropped."""
    client, _ = logged_in_with_password("root")

    response = client.post(TWO_FACTOR, {"token": code_for(phone), "next": "https://evil.example/"})

    assert response.url == "/admin/"


def test_nobody_can_read_a_devices_secret_in_the_admin(phone, client):
    """A superuser can remove a lost phone's device, but not copy anyone's secret."""
    client, _ = logged_in_with_password("root")
    client.post(TWO_FACTOR, {"token": code_for(phone)})

    assert client.get(f"/admin/otp_totp/totpdevice/{phone.pk}/config/").status_code == 403
    assert client.get(f"/admin/otp_totp/totpdevice/{phone.pk}/qrcode/").status_code == 403
    response = client.post(f"/admin/otp_totp/totpdevice/{phone.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=phone.pk).exists()


def test_the_admin_names_devices_and_lockouts_in_plain_words(settings, superuser):
    """The admin's index says "Two-factor login" and "Login lockouts", not app labels."""
    settings.RALLY_STAFF_2FA = "off"
    client = Client()
    client.force_login(superuser)

    page = client.get("/admin/").content.decode()

    assert "Two-factor login" in page
    assert "Login lockouts" in page
    assert "Otp_Totp" not in page
    assert ">Axes<" not in page
