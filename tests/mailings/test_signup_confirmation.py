"""Double opt-in: only clicking the emailed link subscribes; nothing is stored before."""

import base64
import datetime as dt
import json
import re
import threading
import time
import zlib

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.db import connection
from django.test import Client
from django.utils.crypto import salted_hmac

from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter
from crm.services import supporter_get
from mailings import selfservice

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]

SIGNUP = {
    "email": "Nia.Okafor@Example.org",
    "first_name": "Nia",
    "last_name": "Okafor",
    "postcode": "e8 1dy",
    "interests": ["r2p", "events"],
}


def confirm_path(message):
    return re.search(r"https://rally\.example\.org(/join/confirm/[^/\s]+/)", message.body).group(1)


def sign_up(client, **changes):
    return client.post("/join/", {**SIGNUP, **changes}, REMOTE_ADDR="203.0.113.7")


def test_submitting_sends_a_confirmation_and_stores_nothing(
    client, interest, other_interest, mailoutbox
):
    response = sign_up(client)

    assert response.status_code == 200
    assert "Check your email" in response.content.decode()
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["Nia.Okafor@Example.org"]
    assert "confirm" in message.subject.lower()
    assert "Responsibility to Protect" in message.body
    assert confirm_path(message) in message.alternatives[0][0]
    assert Supporter.objects.count() == 0
    assert ConsentRecord.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_confirmation_token_reveals_no_personal_data(client, interest, other_interest, mailoutbox):
    sign_up(client)
    path = confirm_path(mailoutbox[0]).lower()
    assert "nia.okafor" not in path
    assert "okafor" not in path
    assert "e8 1dy" not in path


def test_get_on_the_link_only_asks(client, interest, other_interest, mailoutbox):
    sign_up(client)
    response = client.get(confirm_path(mailoutbox[0]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Yes, sign me up" in html
    assert "Nia.Okafor@Example.org" in html
    assert Supporter.objects.count() == 0


def test_clicking_subscribes_with_signup_consent(
    client, interest, other_interest, mailoutbox, settings
):
    settings.RALLY_SIGNUP_WORDING_VERSION = "2025-06"
    sign_up(client)
    response = client.post(confirm_path(mailoutbox[0]))

    assert "you're signed up" in response.content.decode()
    supporter = supporter_get("nia.okafor@example.org")
    assert supporter.source == Supporter.Source.SIGNUP_FORM
    assert (supporter.first_name, supporter.last_name, supporter.postcode) == (
        "Nia",
        "Okafor",
        "E8 1DY",
    )
    assert set(
        supporter.subscriptions.filter(status="subscribed").values_list("interest__slug", flat=True)
    ) == {"r2p", "events"}
    records = ConsentRecord.objects.filter(supporter=supporter)
    assert records.count() == 2
    wording, _version = selfservice.wording("signup")
    for record in records:
        assert record.action == ConsentRecord.Action.GRANTED
        assert record.method == ConsentRecord.Method.SIGNUP_FORM
        assert record.wording == wording
        assert record.wording_version == "2025-06"
        assert record.ip_address is None
        assert record.created_at is not None
    assert Supporter.objects.mailable().interested_in(interest).filter(pk=supporter.pk).exists()


def test_link_emailed_before_the_sign_up_became_a_dataclass_still_confirms(
    client, interest, other_interest, settings
):
    """A confirmation link already in an inbox keeps working: the token format stays."""
    # The pending sign-up exactly as mailings.selfservice.signup_pending built it,
    # sealed exactly as mailings.tokens.make_signup_token did (JSON, zlib, Fernet
    # keyed from SECRET_KEY with the "rally.signup" salt).
    old_pending = {
        "e": "Nia.Okafor@Example.org",
        "f": "Nia",
        "l": "Okafor",
        "p": "E8 1DY",
        "i": [interest.pk, other_interest.pk],
        "w": "Words shown on the form.",
        "wv": "2024-01",
        "ip": "203.0.113.7",
    }
    key = salted_hmac("rally.signup", "fernet", secret=settings.SECRET_KEY, algorithm="sha256")
    fernet = Fernet(base64.urlsafe_b64encode(key.digest()))
    data = zlib.compress(json.dumps(old_pending, separators=(",", ":")).encode())
    token = fernet.encrypt_at_time(data, int(time.time())).decode()

    asked = client.get(f"/join/confirm/{token}/")
    response = client.post(f"/join/confirm/{token}/")

    assert "Nia.Okafor@Example.org" in asked.content.decode()
    assert "you're signed up" in response.content.decode()
    supporter = supporter_get("nia.okafor@example.org")
    assert (supporter.first_name, supporter.last_name, supporter.postcode) == (
        "Nia",
        "Okafor",
        "E8 1DY",
    )
    records = ConsentRecord.objects.filter(supporter=supporter)
    assert {record.interest.slug for record in records} == {"r2p", "events"}
    assert {(r.wording, r.wording_version, r.ip_address) for r in records} == {
        ("Words shown on the form.", "2024-01", "203.0.113.7")
    }


def test_ip_address_is_kept_when_configured(client, interest, mailoutbox, settings):
    settings.RALLY_RECORD_IP = True
    sign_up(client, interests=["r2p"])
    client.post(confirm_path(mailoutbox[0]))
    assert ConsentRecord.objects.get().ip_address == "203.0.113.7"


def test_wording_changed_after_sign_up_records_what_was_shown(
    client, interest, mailoutbox, settings
):
    settings.RALLY_SIGNUP_WORDING = "Old words for {site_name}."
    settings.RALLY_SIGNUP_WORDING_VERSION = "v1"
    sign_up(client, interests=["r2p"])
    settings.RALLY_SIGNUP_WORDING = "New words."
    settings.RALLY_SIGNUP_WORDING_VERSION = "v2"
    client.post(confirm_path(mailoutbox[0]))
    record = ConsentRecord.objects.get()
    assert (record.wording, record.wording_version) == ("Old words for Rally.", "v1")


def test_confirming_twice_changes_nothing_more(client, interest, other_interest, mailoutbox):
    sign_up(client)
    path = confirm_path(mailoutbox[0])
    client.post(path)
    response = client.post(path)
    assert response.status_code == 200
    assert Supporter.objects.count() == 1
    assert ConsentRecord.objects.count() == 2


def test_existing_supporter_signing_up_again_is_not_duplicated(
    client, supporter, interest, other_interest, mailoutbox
):
    sign_up(client, email=" ALICE@example.org ", first_name="Someone", postcode="")
    client.post(confirm_path(mailoutbox[0]))

    assert Supporter.objects.count() == 1
    supporter.refresh_from_db()
    assert supporter.first_name == "Alice"  # a sign-up fills gaps, never overwrites
    assert supporter.subscriptions.get(interest=other_interest).status == "subscribed"
    assert ConsentRecord.objects.filter(supporter=supporter, method="signup_form").count() == 1


def test_unsubscribed_supporter_who_signs_up_again_is_subscribed(
    client, opted_out_supporter, interest, mailoutbox
):
    sign_up(client, email="bob@example.org", interests=["r2p"])
    client.post(confirm_path(mailoutbox[0]))
    opted_out_supporter.refresh_from_db()
    assert opted_out_supporter.status == Supporter.Status.ACTIVE
    assert Subscription.objects.get(supporter=opted_out_supporter).status == "subscribed"


def test_expired_link_gets_a_friendly_page_and_subscribes_no_one(
    client, interest, mailoutbox, settings
):
    settings.RALLY_SIGNUP_CONFIRM_MAX_AGE = 7 * 24 * 3600
    sign_up(client, interests=["r2p"])
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=8)):
        response = client.post(confirm_path(mailoutbox[0]))
    assert response.status_code == 404
    assert "This confirmation link has expired" in response.content.decode()
    assert 'href="/join/"' in response.content.decode()
    assert Supporter.objects.count() == 0


def test_tampered_link_gets_a_friendly_page(client, interest, mailoutbox):
    sign_up(client, interests=["r2p"])
    path = confirm_path(mailoutbox[0])
    response = client.post(path[:-6] + "AAAAA/")
    assert response.status_code == 404
    assert Supporter.objects.count() == 0


def test_address_suppressed_after_the_email_was_sent_is_refused(client, interest, mailoutbox):
    from crm.services import suppression_add

    sign_up(client, interests=["r2p"])
    suppression_add(email=SIGNUP["email"], reason="complaint")
    response = client.post(confirm_path(mailoutbox[0]))
    assert response.status_code == 409
    assert "We can't add this address" in response.content.decode()
    assert Supporter.objects.count() == 0


def test_confirmation_needs_the_csrf_token(interest, mailoutbox):
    Client().post("/join/", {**SIGNUP, "interests": ["r2p"]})
    response = Client(enforce_csrf_checks=True).post(confirm_path(mailoutbox[0]))
    assert response.status_code == 403
    assert Supporter.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_confirmations_create_one_supporter(interest, mailoutbox):
    Client().post("/join/", {**SIGNUP, "interests": ["r2p"]})
    path = confirm_path(mailoutbox[0])
    codes = []
    barrier = threading.Barrier(5)

    def click():
        barrier.wait()
        codes.append(Client().post(path).status_code)
        connection.close()

    threads = [threading.Thread(target=click) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert codes == [200] * 5
    assert Supporter.objects.count() == 1
    assert ConsentRecord.objects.count() == 1
