"""Numeric and date segment rules have bounds: past them, a clear message, never a 500."""

import pytest
from django.urls import reverse

from crm.segments import MAX_DAYS, SegmentRuleError, validate_rules
from tests.factories import SegmentFactory, made_segments

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def form_data(**overrides):
    return {"name": "Long-lost readers", "description": "", "kind": "rules", **overrides}


@pytest.mark.parametrize("field", ["opened_within_days", "clicked_within_days"])
def test_a_million_days_is_a_form_error_and_saves_nothing(staff_client, field):
    response = staff_client.post(reverse("admin:crm_segment_add"), form_data(**{field: 1000000}))

    assert response.status_code == 200
    assert f"less than or equal to {MAX_DAYS}" in response.content.decode()
    assert made_segments().count() == 0


def test_the_longest_allowed_period_is_saved_and_evaluated(staff_client, supporter):
    response = staff_client.post(
        reverse("admin:crm_segment_add"), form_data(opened_within_days=MAX_DAYS)
    )

    assert response.status_code == 302
    segment = made_segments().get()
    page = staff_client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    assert "0 supporters" in page.content.decode()


def test_a_date_past_the_calendar_is_a_form_error(staff_client):
    response = staff_client.post(
        reverse("admin:crm_segment_add"), form_data(joined_before="9999-12-31")
    )

    assert response.status_code == 200
    assert "must be a date between 1900-01-01 and 2999-12-31" in response.content.decode()
    assert made_segments().count() == 0


@pytest.mark.parametrize(
    "rules",
    [
        {"opened_within_days": 1000000},
        {"clicked_within_days": 10**30},
        {"opened_within_days": 0},
        {"joined_before": "9999-12-31"},
        {"joined_after": "0001-01-01"},
    ],
)
def test_a_stored_out_of_range_rule_is_explained_not_a_500(staff_client, supporter, rules):
    """A definition saved before the bounds (or written by hand) shows why it cannot be used."""
    segment = SegmentFactory(name="Out of range", rules=rules)

    page = staff_client.get(reverse("admin:crm_segment_change", args=[segment.pk]))
    assert page.status_code == 200
    assert "Cannot be evaluated" in page.content.decode()

    listing = staff_client.get(reverse("admin:crm_supporter_changelist"), {"segment": segment.pk})
    assert listing.status_code == 200
    content = listing.content.decode()
    assert "cannot be evaluated" in content
    assert "alice@example.org" not in content


def test_rule_bounds_are_named_in_the_message():
    with pytest.raises(SegmentRuleError, match=r"from 1 to 3,650 \(ten years\), not 1000000"):
        validate_rules({"opened_within_days": 1000000})
