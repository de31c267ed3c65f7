"""The supporter list's columns: short enough for one line, the whole value on hover, sortable."""

import pytest
from django.urls import reverse

from crm import services
from tests.factories import PartnerOrganisationFactory, SupporterFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:crm_supporter_changelist")


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def emails(response):
    return [supporter.email for supporter in response.context["cl"].result_list]


def test_each_cell_holds_its_whole_value_on_hover(staff_client, interest, other_interest):
    partner = PartnerOrganisationFactory(name="The Coalition for the Responsibility to Protect")
    SupporterFactory(
        email="a.long.address@campaigns.example.org",
        first_name="Maximilianne",
        last_name="Featherstonehaugh",
        postcode="75001",
        country="FR",
        partner=partner,
        source="partner_import",
        subscribed_to=[interest, other_interest],
    )
    quitter = SupporterFactory(email="quit@example.org", subscribed_to=[interest])
    services.supporter_unsubscribe(supporter=quitter, method="email_link")

    html = staff_client.get(CHANGELIST).content.decode()

    assert 'title="a.long.address@campaigns.example.org"' in html
    assert 'title="Maximilianne Featherstonehaugh"' in html
    assert 'title="75001 (France)">75001 FR<' in html
    assert 'title="Responsibility to Protect, Events and actions"' in html
    assert 'title="Partner import">Import<' in html
    assert 'title="The Coalition for the Responsibility to Protect"' in html
    assert 'title="Unsubscribed from all email">Unsubscribed<' in html


def test_the_list_sorts_by_email_ignoring_case_and_by_surname(staff_client):
    for email, surname in (
        ("b@example.org", "Adams"),
        ("C@example.org", "Zephyr"),
        ("a@example.org", "Moss"),
    ):
        SupporterFactory(email=email, last_name=surname)

    assert emails(staff_client.get(CHANGELIST, {"o": "1"})) == [
        "a@example.org",
        "b@example.org",
        "C@example.org",
    ]
    assert emails(staff_client.get(CHANGELIST, {"o": "-1"}))[0] == "C@example.org"
    assert emails(staff_client.get(CHANGELIST, {"o": "2"})) == [
        "b@example.org",
        "a@example.org",
        "C@example.org",
    ]


def test_the_title_says_how_many(staff_client):
    for _ in range(3):
        SupporterFactory()

    html = staff_client.get(CHANGELIST).content.decode()

    assert '<h1>Supporters <span class="supporter-count">3</span></h1>' in html
    assert "3 supporters" in html
