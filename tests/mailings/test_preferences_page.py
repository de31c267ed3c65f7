"""The preference centre: current choices, saving writes consent, details corrected."""

import pytest
from django.test import Client

from crm.models import ConsentRecord, Subscription
from mailings import selfservice, tokens
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def internal_interest(db):
    return factories.CampaignInterestFactory(
        slug="board-only", name="Board papers", is_public=False, description="Internal."
    )


def url(supporter, suffix=""):
    return f"/preferences/{tokens.make_preferences_token(supporter)}/{suffix}"


def subscribed(supporter):
    return set(
        Subscription.objects.filter(
            supporter=supporter, status=Subscription.Status.SUBSCRIBED
        ).values_list("interest__slug", flat=True)
    )


def test_page_shows_public_interests_with_descriptions_and_current_choices(
    client, supporter, interest, other_interest, internal_interest
):
    other_interest.description = "Vigils, lobby days and letters to your MP."
    other_interest.save()

    response = client.get(url(supporter))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="interest-r2p" aria-describedby="interest-r2p-description" checked' in html
    assert 'id="interest-events" aria-describedby="interest-events-description">' in html
    assert "Vigils, lobby days and letters to your MP." in html
    assert "Board papers" not in html
    assert 'value="Alice"' in html


def test_get_changes_nothing(client, supporter):
    before = ConsentRecord.objects.count()
    client.get(url(supporter))
    client.head(url(supporter))
    assert ConsentRecord.objects.count() == before


def test_saving_writes_subscriptions_and_consent_with_the_wording_shown(
    client, supporter, interest, other_interest
):
    response = client.post(
        url(supporter),
        {"interests": ["events"], "first_name": "Alice", "last_name": "Taylor", "postcode": ""},
    )

    assert response.status_code == 200
    assert subscribed(supporter) == {"events"}
    wording, version = selfservice.wording("preferences")
    granted = ConsentRecord.objects.get(supporter=supporter, interest=other_interest)
    assert granted.action == ConsentRecord.Action.GRANTED
    assert granted.method == ConsentRecord.Method.EMAIL_LINK
    assert granted.wording == wording
    assert granted.wording_version == version
    withdrawn = ConsentRecord.objects.get(
        supporter=supporter, interest=interest, action=ConsentRecord.Action.WITHDRAWN
    )
    assert withdrawn.method == ConsentRecord.Method.EMAIL_LINK
    assert withdrawn.wording == wording


def test_saving_says_clearly_what_changed(client, supporter, interest, other_interest):
    response = client.post(
        url(supporter),
        {"interests": ["events"], "first_name": "Alice", "last_name": "Taylor", "postcode": ""},
    )
    html = response.content.decode()
    assert "Your changes are saved" in html
    assert "You will now hear about: <strong>Events and actions</strong>." in html
    assert "You will no longer hear about: <strong>Responsibility to Protect</strong>." in html
    assert "We updated your postcode." in html
    assert 'id="interest-events" aria-describedby="interest-events-description" checked' in html


def test_saving_unchanged_choices_writes_nothing(client, supporter, interest):
    before = ConsentRecord.objects.count()
    response = client.post(
        url(supporter),
        {
            "interests": ["r2p"],
            "first_name": "Alice",
            "last_name": "Taylor",
            "postcode": "SW1A 1AA",
        },
    )
    assert "Nothing changed" in response.content.decode()
    assert ConsentRecord.objects.count() == before


def test_saving_leaves_internal_interests_alone(client, supporter, internal_interest):
    from crm.services import consent_grant

    consent_grant(supporter=supporter, interest=internal_interest, method="staff")
    client.post(url(supporter), {"interests": [], "first_name": "Alice"})
    assert subscribed(supporter) == {"board-only"}


def test_supporter_corrects_name_and_postcode(client, supporter):
    client.post(
        url(supporter),
        {"interests": ["r2p"], "first_name": "Alicia", "last_name": "Ng", "postcode": "n1  9gu"},
    )
    supporter.refresh_from_db()
    assert (supporter.first_name, supporter.last_name, supporter.postcode) == (
        "Alicia",
        "Ng",
        "N1 9GU",
    )
    change = supporter.history.first()
    assert change.history_change_reason == "Corrected by the supporter in the preference centre"


def test_overlong_details_are_refused_with_a_message_and_change_nothing(client, supporter):
    response = client.post(url(supporter), {"interests": [], "first_name": "A" * 101})
    html = response.content.decode()
    assert response.status_code == 200
    assert "There is a problem" in html
    assert 'aria-invalid="true"' in html
    assert subscribed(supporter) == {"r2p"}


def test_ticking_a_topic_brings_back_an_unsubscribed_supporter(client, opted_out_supporter):
    client.post(url(opted_out_supporter), {"interests": ["r2p"], "first_name": "Bob"})
    opted_out_supporter.refresh_from_db()
    assert opted_out_supporter.status == "active"
    assert subscribed(opted_out_supporter) == {"r2p"}


def test_suppressed_supporter_can_leave_but_not_join_topics(
    client, supporter, interest, other_interest
):
    from crm.services import suppression_add

    suppression_add(email=supporter.email, reason="complaint")
    response = client.post(url(supporter), {"interests": ["events"], "first_name": "Alice"})
    assert "could not add new topics" in response.content.decode()
    assert subscribed(supporter) == set()


def test_post_needs_the_csrf_token(supporter):
    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post(url(supporter), {"interests": []})
    assert response.status_code == 403
    assert subscribed(supporter) == {"r2p"}


def test_page_loads_nothing_from_elsewhere_and_is_never_cached(client, supporter):
    response = client.get(url(supporter))
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "http://" not in html
    assert "https://" not in html
    assert "<script" not in html


def test_page_is_a_handful_of_queries(client, supporter, django_assert_max_num_queries):
    """The preference centre is shown in full in at most six queries."""
    with django_assert_max_num_queries(6):
        response = client.get(url(supporter))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<form" in html
    assert 'id="interest-r2p"' in html
    assert 'value="Alice"' in html


def test_what_people_typed_is_shown_as_text_never_as_markup(client, supporter, other_interest):
    supporter.first_name = '"><script>alert(1)</script>'
    supporter.postcode = "<b>SW1</b>"
    supporter.save()
    other_interest.description = "Vigils & <em>lobby</em> days"
    other_interest.save()

    html = client.get(url(supporter)).content.decode()

    assert "<script>" not in html
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert 'value="&lt;b&gt;SW1&lt;/b&gt;"' in html
    assert "Vigils &amp; &lt;em&gt;lobby&lt;/em&gt; days" in html
