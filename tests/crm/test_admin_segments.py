import pytest
from django.urls import reverse

from crm.models import CampaignInterest, Segment
from tests.factories import SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def form_data(**overrides):
    return {"name": "Northern supporters", "description": "", "kind": "rules", **overrides}


def test_segment_page_shows_live_count_and_first_members(staff_client, supporter, interest):
    SupporterFactory(email="nobody@example.org")
    segment = SegmentFactory(rules={"interests": [interest.slug]})
    response = staff_client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    content = response.content.decode()
    assert "1 supporters" in content
    assert "Alice" in content
    assert "nobody@example.org" not in content


def test_rules_are_saved_from_ordinary_fields(staff_client, interest):
    response = staff_client.post(
        reverse("admin:crm_segment_add"),
        form_data(interests=[interest.slug], countries="gb, ie", postcode_prefixes="LS, M1"),
    )
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.rules == {
        "interests": ["r2p"],
        "countries": ["GB", "IE"],
        "postcode_prefixes": ["LS", "M1"],
    }


def test_bad_rule_gets_a_clear_message_and_saves_nothing(staff_client):
    response = staff_client.post(reverse("admin:crm_segment_add"), form_data(countries="GB, XX"))
    assert response.status_code == 200
    assert "Unknown country code &#x27;XX&#x27;" in response.content.decode()
    assert Segment.objects.count() == 0


def test_segment_naming_a_deleted_interest_says_so(staff_client):
    old = CampaignInterest.objects.create(slug="old", name="Old campaign")
    segment = SegmentFactory(rules={"interests": ["old"]})
    old.delete()
    response = staff_client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    assert "Cannot be evaluated" in response.content.decode()
    assert "does not exist" in response.content.decode()


def test_static_segment_has_no_rules(staff_client, interest):
    staff_client.post(
        reverse("admin:crm_segment_add"), form_data(kind="static", interests=[interest.slug])
    )
    assert Segment.objects.get().rules == {}
