"""Webhook URLs of ESPs Rally is not set up for answer 404, never 500.

Anymail reads an ESP's webhook settings (Mailgun's signing key, Mandrill's and
Postal's webhook keys, boto3 for Amazon SES…) when a call arrives and raises
if they are missing, which answered 500 to anyone who posted. Rally receives
no inbound mail, so Anymail's inbound URLs are not there at all.
"""

import importlib.util
import json

import pytest
from anymail import urls as anymail_urls
from django.test import Client

from tests.security.conftest import WEBHOOK_AUTH, changed_tables, database_state

pytestmark = [
    pytest.mark.django_db,
    # Anymail warns of open webhooks, SendGrid's end of support and SendinBlue's old name.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailWarning"),
]

# Tracking webhooks that cannot work without settings of their own.
NEEDS_SETTINGS = ["mailersend", "mailgun", "postal", "unisender_go"]
if importlib.util.find_spec("boto3") is None:
    NEEDS_SETTINGS.append("amazon_ses")

# Every URL Anymail offers, tracking and inbound, as a caller would spell it.
ANYMAIL_URLS = sorted(
    "/anymail/" + str(pattern.pattern).replace("^", "").replace("(_mime)?/$", "/")
    for pattern in anymail_urls.urlpatterns
)

SETUPS = {
    "development, no settings": (True, {}),
    "production, no secret": (False, {}),
    "production, secret": (False, {"WEBHOOK_SECRET": "rally:webhook-secret"}),
}


def _post(url, body, **headers):
    client = Client(raise_request_exception=False)
    return client.post(url, data=body, content_type="application/json", **headers)


@pytest.mark.parametrize("setup", list(SETUPS), ids=list(SETUPS))
@pytest.mark.parametrize("esp", NEEDS_SETTINGS)
def test_tracking_webhook_of_an_esp_without_its_settings_is_not_found(settings, esp, setup):
    settings.DEBUG, settings.ANYMAIL = SETUPS[setup]
    before = database_state()

    response = _post(f"/anymail/{esp}/tracking/", json.dumps({"event": "bounced"}))

    assert response.status_code == 404
    assert changed_tables(before, database_state()) == []


@pytest.mark.parametrize("url", ["/anymail/mandrill/", "/anymail/mandrill/tracking/"])
def test_mandrill_without_its_webhook_key_is_not_found_even_with_the_secret(settings, url):
    """Mandrill's key is read after basic auth: the right credentials get 404, not 500."""
    settings.DEBUG = False
    settings.ANYMAIL = {"WEBHOOK_SECRET": "rally:webhook-secret"}
    events = json.dumps([{"event": "hard_bounce", "msg": {"email": "john@example.com"}}])

    anonymous = Client(raise_request_exception=False).post(url, {"mandrill_events": events})
    with_credentials = Client(raise_request_exception=False).post(
        url, {"mandrill_events": events}, HTTP_AUTHORIZATION=WEBHOOK_AUTH
    )

    assert (anonymous.status_code, with_credentials.status_code) == (401, 404)


@pytest.mark.parametrize("setup", list(SETUPS), ids=list(SETUPS))
def test_no_anymail_url_answers_500_to_an_anonymous_post(settings, setup):
    settings.DEBUG, settings.ANYMAIL = SETUPS[setup]
    answers = {}

    for url in ANYMAIL_URLS:
        for body in ("{}", "", '{"RecordType": "Bounce"}'):
            answers[url, body] = _post(url, body).status_code

    assert {key: code for key, code in answers.items() if code >= 500} == {}
    assert {code for (url, _), code in answers.items() if "inbound" in url} == {404}


def test_configured_esp_webhook_still_answers(settings):
    """With its key set, Mailgun's webhook is there (a forged signature gets 403)."""
    settings.DEBUG = False
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": "rally:webhook-secret",
        "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key",
    }
    forged = {"signature": {"timestamp": "1", "token": "t", "signature": "0" * 64}}

    response = _post(
        "/anymail/mailgun/tracking/", json.dumps(forged), HTTP_AUTHORIZATION=WEBHOOK_AUTH
    )

    assert response.status_code == 403


SENDGRID_BOUNCE = [
    {
        "email": "someone@example.org",
        "event": "bounce",
        "type": "bounce",
        "reason": "550 5.1.1 Unknown user",
        "timestamp": 1700000000,
        "sg_event_id": "sg-1",
        "sg_message_id": "sg-message-1",
    }
]


@pytest.mark.parametrize("setup", list(SETUPS), ids=list(SETUPS))
def test_an_esp_rally_does_not_send_through_is_not_found(settings, setup):
    """Sending through Postmark, SendGrid's URL is a 404 even to a caller with the secret.

    SendGrid's webhook needs no settings of its own, so without this anyone
    holding the secret could post bounces in a format Rally never receives.
    """
    debug, anymail = SETUPS[setup]
    settings.DEBUG = debug
    settings.ANYMAIL = anymail
    settings.RALLY_WEBHOOK_ESPS = ["postmark"]
    before = database_state()

    response = _post(
        "/anymail/sendgrid/tracking/",
        json.dumps(SENDGRID_BOUNCE),
        HTTP_AUTHORIZATION=WEBHOOK_AUTH,
    )

    assert response.status_code == 404
    assert changed_tables(before, database_state()) == []


def test_by_default_only_the_esp_of_email_backend_is_answered(tmp_path):
    """RALLY_WEBHOOK_ESPS defaults to the ESP named by EMAIL_BACKEND."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "DEBUG": "1",
        "RALLY_VAR_DIR": str(tmp_path),
        "EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend",
    }
    env.pop("RALLY_WEBHOOK_ESPS", None)
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings as s; import django; "
            "django.setup(); print(s.RALLY_WEBHOOK_ESPS)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert shown == "['mailgun']"
