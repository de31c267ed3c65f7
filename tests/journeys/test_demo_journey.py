"""The demo's welcome series is live and welcomes whoever signs up."""

import pytest

from crm.demo import demo_seed
from crm.models import CampaignInterest
from mailings.journeys.demo import demo_journeys
from mailings.journeys.models import Journey
from mailings.journeys.services import journey_problems
from tests import factories
from tests.journeys.conftest import sign_up, subjects_to, tick_and_send

pytestmark = pytest.mark.django_db


def test_demo_welcome_series_runs_for_new_demo_supporters():
    demo_seed(supporters=20)
    demo_journeys()
    demo_journeys()  # once
    journey = Journey.objects.get()
    assert journey.status == Journey.Status.LIVE
    assert journey_problems(journey=journey) == []
    assert journey.steps.filter(kind="email").count() == 3
    joiner = factories.SupporterFactory(email="joiner@example.org", first_name="Jo")
    sign_up(joiner, CampaignInterest.objects.get(slug="r2p"))
    tick_and_send()
    assert subjects_to("joiner@example.org") == ["Welcome to the campaign"]
