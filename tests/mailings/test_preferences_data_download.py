""" "Download my data" is a link emailed to the supporter, signed and expiring."""

import datetime as dt
import json
import re

import pytest
import time_machine
from django.core import mail

from crm.models import AuditEvent
from crm.services import supporter_export_data
from mailings import tokens

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]


def request_data(client, supporter):
    return client.post(f"/preferences/{tokens.make_preferences_token(supporter)}/my-data/")


def emailed_link(message):
    return re.search(r"https://rally\.example\.org(/my-data/[^/\s]+/)", message.body).group(1)


def test_request_emails_a_link_instead_of_downloading(client, supporter):
    response = request_data(client, supporter)

    assert response["Content-Type"].startswith("text/html")
    assert "We have emailed you a link" in response.content.decode()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.org"]
    assert mail.outbox[0].anymail_test_params["tags"] == ["notice"]
    assert mail.outbox[0].anymail_test_params["metadata"] == {"notice": "data_download"}
    assert "/my-data/" in mail.outbox[0].alternatives[0][0]


def test_emailed_link_shows_a_button_then_downloads_the_staff_export(client, supporter):
    request_data(client, supporter)
    link = emailed_link(mail.outbox[0])

    page = client.get(link)
    assert page.status_code == 200
    assert "Download my data" in page.content.decode()
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.DATA_EXPORTED).exists()

    download = client.post(link)
    assert download["Content-Disposition"] == 'attachment; filename="my-data.json"'
    data = json.loads(download.content)
    staff = supporter_export_data(supporter=supporter)
    assert data.keys() == staff.keys()
    assert data["supporter"] == staff["supporter"]
    assert data["consent_history"] == staff["consent_history"]
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.DATA_EXPORTED).count() == 2


def test_link_expires(client, supporter, settings):
    settings.RALLY_DATA_LINK_MAX_AGE = 24 * 3600
    request_data(client, supporter)
    link = emailed_link(mail.outbox[0])
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)):
        response = client.post(link)
    assert response.status_code == 404
    assert "Links to download your data work for a short time only" in response.content.decode()


def test_requests_are_rate_limited_per_supporter(client, supporter, settings):
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "2/h"
    for _ in range(4):
        assert request_data(client, supporter).status_code == 200
    assert len(mail.outbox) == 2


def test_no_data_link_to_a_suppressed_address(client, supporter):
    from crm.services import suppression_add

    suppression_add(email=supporter.email, reason="complaint")
    request_data(client, supporter)
    assert mail.outbox == []
