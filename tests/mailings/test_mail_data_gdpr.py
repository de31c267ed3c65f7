"""Erasure and data export cover what the mailing history holds."""

import pytest

from crm import services as crm
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(newsletter):
    supporter = SupporterFactory(email="dana@example.org")
    delivery = DeliveryFactory(
        mailing=newsletter,
        supporter=supporter,
        status=Delivery.Status.FAILED,
        error="The ESP refused the message (422): Invalid 'To' address: 'dana@example.org'.",
    )
    DeliveryEvent.objects.create(
        delivery=delivery,
        mailing=newsletter,
        esp_name="Postmark",
        dedupe_key="1",
        event_type="clicked",
        timestamp=delivery.created_at,
        url="https://rally.example.org/preferences/token-for-dana/",
        reason="bounce for dana@example.org",
    )
    return supporter, delivery


def test_erasure_keeps_the_count_but_not_the_details(history):
    supporter, delivery = history

    crm.supporter_erase(supporter=supporter)

    delivery.refresh_from_db()
    assert delivery.error == ""
    event = DeliveryEvent.objects.get(delivery=delivery)
    assert (event.url, event.reason) == ("", "")
    assert Delivery.objects.filter(mailing=delivery.mailing).count() == 1


def test_export_lists_each_mailing_and_its_events(history):
    supporter, delivery = history

    data = crm.supporter_export_data(supporter=supporter)

    assert data["mailings"][0]["mailing"] == delivery.mailing.name
    assert data["mailings"][0]["events"][0]["type"] == "clicked"
