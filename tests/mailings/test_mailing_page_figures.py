"""The mailing page after sending: a steady per-second figure and no empty error box."""

import datetime

import pytest
import time_machine
from django.contrib.staticfiles import finders

from mailings import reports
from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def sent_mailing(interest):
    """100 messages sent in the ten seconds from START, and the mailing finished."""
    mailing = MailingFactory(interests=[interest])
    supporters = [SupporterFactory() for _ in range(100)]
    Delivery.objects.bulk_create(
        Delivery(
            mailing=mailing,
            supporter=supporter,
            status=Delivery.Status.SENT,
            sent_at=START + datetime.timedelta(seconds=(n + 1) / 10),
        )
        for n, supporter in enumerate(supporters)
    )
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT,
        started_at=START,
        finished_at=START + datetime.timedelta(seconds=10),
        recipient_count=100,
    )
    mailing.refresh_from_db()
    return mailing


def test_per_second_of_a_finished_mailing_is_its_sending_speed_an_hour_later_too(sent_mailing):
    with time_machine.travel(START + datetime.timedelta(seconds=11), tick=False):
        just_after = reports.progress(sent_mailing)
    with time_machine.travel(START + datetime.timedelta(hours=1), tick=False):
        an_hour_later = reports.progress(sent_mailing)

    assert just_after["rate_per_second"] == 10.0
    assert an_hour_later["rate_per_second"] == 10.0
    assert an_hour_later["eta_seconds"] is None


def test_while_sending_per_second_is_the_recent_rate(sent_mailing):
    Mailing.objects.filter(pk=sent_mailing.pk).update(status=Mailing.Status.SENDING)
    sent_mailing.refresh_from_db()

    progress = reports.progress(sent_mailing, now=START + datetime.timedelta(seconds=20))

    assert progress["rate_per_second"] == 5.0  # 100 in the 20 seconds since the start


def test_the_outage_box_of_a_sent_mailing_is_hidden_and_stays_hidden(
    client, superuser, sent_mailing
):
    """The box is marked hidden, and the admin's stylesheet lets `hidden` win over .errornote."""
    client.force_login(superuser)

    html = client.get(f"/admin/mailings/mailing/{sent_mailing.pk}/change/").content.decode()

    assert '<p class="errornote" data-progress="esp_outage" role="status" hidden></p>' in html
    assert '<link rel="stylesheet" href="/static/crm/admin-site.css">' in html
    with open(finders.find("crm/admin-site.css")) as css:
        assert "[hidden] { display: none !important; }" in css.read()
