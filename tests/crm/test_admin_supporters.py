import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm import services
from crm.models import AuditEvent, ConsentRecord, Segment, Subscription, Supporter, Suppression
from tests.factories import SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:crm_supporter_changelist")


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def listed(response):
    return {s.email for s in response.context["cl"].result_list}


def test_search_by_whole_email_ignores_case(staff_client, supporter):
    SupporterFactory(email="alicia@example.org")
    assert listed(staff_client.get(CHANGELIST, {"q": " ALICE@example.org"})) == {
        "alice@example.org"
    }


def test_search_by_name_postcode_or_start_of_address(staff_client, supporter):
    SupporterFactory(email="zed@example.org", last_name="Okafor", postcode="LS1 4AP")
    assert listed(staff_client.get(CHANGELIST, {"q": "okaf"})) == {"zed@example.org"}
    assert listed(staff_client.get(CHANGELIST, {"q": "ls1"})) == {"zed@example.org"}
    assert listed(staff_client.get(CHANGELIST, {"q": "ali"})) == {"alice@example.org"}


def test_filters_by_interest_status_partner_and_segment(
    staff_client, supporter, opted_out_supporter, partner, other_interest
):
    from_partner = SupporterFactory(email="p@example.org", partner=partner)
    assert listed(staff_client.get(CHANGELIST, {"interest": "r2p"})) == {"alice@example.org"}
    assert listed(staff_client.get(CHANGELIST, {"status__exact": "unsubscribed"})) == {
        "bob@example.org"
    }
    assert listed(staff_client.get(CHANGELIST, {"partner__id__exact": partner.pk})) == {
        from_partner.email
    }
    segment = SegmentFactory(rules={"partners": [partner.slug]})
    assert listed(staff_client.get(CHANGELIST, {"segment": segment.pk})) == {from_partner.email}


def test_changelist_shows_subscribed_interests(staff_client, supporter):
    response = staff_client.get(CHANGELIST)
    assert b"Responsibility to Protect" in response.content


def test_supporter_page_shows_subscriptions_and_read_only_consent(staff_client, supporter):
    response = staff_client.get(reverse("admin:crm_supporter_change", args=[supporter.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Consent history" in content
    # Each consent record is an entry of the page's timeline.
    assert "Subscribed to Responsibility to Protect by staff" in content
    assert "Export everything we hold" in content


def test_adding_a_duplicate_in_another_case_is_refused_with_a_message(staff_client, supporter):
    response = staff_client.post(
        reverse("admin:crm_supporter_add"),
        {
            "email": " Alice@EXAMPLE.org ",
            "country": "GB",
            "source": "staff",
            "subscriptions-TOTAL_FORMS": 0,
            "subscriptions-INITIAL_FORMS": 0,
            "consent_records-TOTAL_FORMS": 0,
            "consent_records-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert Supporter.objects.count() == 1


def test_bulk_subscribe_asks_for_confirmation_then_records_staff_consent(
    staff_client, membership_user, other_interest
):
    people = [SupporterFactory() for _ in range(3)]
    data = {"action": "subscribe_action", ACTION_CHECKBOX_NAME: [p.pk for p in people]}
    confirm = staff_client.post(CHANGELIST, data)
    assert confirm.status_code == 200
    assert b"This applies to <strong>3</strong>" in confirm.content
    assert not Subscription.objects.filter(interest=other_interest).exists()

    staff_client.post(CHANGELIST, {**data, "apply": "1", "interest": other_interest.pk})
    assert Subscription.objects.filter(interest=other_interest, status="subscribed").count() == 3
    records = ConsentRecord.objects.filter(interest=other_interest)
    assert {(r.method, r.actor_id) for r in records} == {("staff", membership_user.pk)}


def test_bulk_subscribe_never_says_yes_for_people_who_said_no(
    staff_client, membership_user, supporter, opted_out_supporter, interest, other_interest
):
    fresh = [SupporterFactory() for _ in range(3)]
    already = SupporterFactory(subscribed_to=[other_interest])
    left_topic = SupporterFactory(subscribed_to=[other_interest])
    services.supporter_unsubscribe(
        supporter=left_topic, interest=other_interest, method="email_link"
    )
    suppressed = SupporterFactory()
    services.suppression_add(email=suppressed.email, reason=Suppression.Reason.STAFF)
    bounced = SupporterFactory(status=Supporter.Status.BOUNCED)
    everyone = [*fresh, already, left_topic, supporter, opted_out_supporter, suppressed, bounced]
    before = ConsentRecord.objects.count()

    response = staff_client.post(
        CHANGELIST,
        {
            "action": "subscribe_action",
            ACTION_CHECKBOX_NAME: [p.pk for p in everyone],
            "apply": "1",
            "interest": other_interest.pk,
        },
        follow=True,
    )

    subscribed = set(
        Subscription.objects.filter(interest=other_interest, status="subscribed").values_list(
            "supporter__email", flat=True
        )
    )
    assert subscribed == {p.email for p in [*fresh, already, supporter]}
    assert Subscription.objects.get(supporter=left_topic).status == "unsubscribed"
    assert not Subscription.objects.filter(
        supporter__in=[opted_out_supporter, suppressed, bounced], interest=other_interest
    ).exists()
    opted_out_supporter.refresh_from_db()
    assert opted_out_supporter.status == Supporter.Status.UNSUBSCRIBED
    granted = ConsentRecord.objects.filter(interest=other_interest, action="granted").exclude(
        supporter__in=[already, left_topic]
    )
    assert {r.supporter.email for r in granted} == {p.email for p in [*fresh, supporter]}
    assert {(r.method, r.actor_id, r.actor_label) for r in granted} == {
        ("staff", membership_user.pk, "staff bulk action")
    }
    assert ConsentRecord.objects.count() == before + 4
    assert (
        AuditEvent.objects.filter(kind="consent_granted", source="staff bulk action").count() == 4
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown[0] == "Subscribed 4 supporter(s) to “Events and actions”."
    assert shown[1] == "1 were subscribed already."
    assert shown[2].startswith("Left 4 as they are: 2 unsubscribed from all email or from")
    assert shown[2].endswith(
        "; 2 cannot be emailed (bounced, complained, erased or on the suppression list)."
    )


def test_bulk_subscribe_and_unsubscribe_take_the_same_queries_for_many_supporters(
    membership_user, other_interest
):
    def queries(count):
        people = [SupporterFactory() for _ in range(count)]
        selected = Supporter.objects.filter(pk__in=[p.pk for p in people])
        with CaptureQueriesContext(connection) as subscribing:
            done = services.supporters_subscribe(
                supporters=selected, interest=other_interest, actor=membership_user, method="staff"
            )
        with CaptureQueriesContext(connection) as unsubscribing:
            left = services.supporters_unsubscribe(
                supporters=selected, interest=other_interest, actor=membership_user, method="staff"
            )
        assert done.subscribed == left == count
        return len(subscribing), len(unsubscribing)

    assert queries(3) == queries(60)


def test_bulk_unsubscribe_writes_withdrawals(staff_client, supporter, interest):
    data = {
        "action": "unsubscribe_action",
        ACTION_CHECKBOX_NAME: [supporter.pk],
        "apply": "1",
        "interest": interest.pk,
    }
    staff_client.post(CHANGELIST, data)
    assert Subscription.objects.get(supporter=supporter).status == "unsubscribed"
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1


def test_bulk_add_to_static_segment(staff_client, supporter):
    segment = SegmentFactory(kind=Segment.Kind.STATIC)
    staff_client.post(
        CHANGELIST,
        {
            "action": "add_to_segment_action",
            ACTION_CHECKBOX_NAME: [supporter.pk],
            "apply": "1",
            "segment": segment.pk,
        },
    )
    assert list(segment.supporters()) == [supporter]


def test_gdpr_export_downloads_everything_and_is_audited(staff_client, supporter, membership_user):
    url = reverse("admin:crm_supporter_export_data", args=[supporter.pk])
    response = staff_client.get(url)
    assert (
        response["Content-Disposition"] == f'attachment; filename="supporter-{supporter.pk}.json"'
    )
    data = json.loads(response.content)
    assert data["supporter"]["email"] == "alice@example.org"
    assert data["subscriptions"][0]["interest"] == "Responsibility to Protect"
    assert data["consent_history"][0]["action"] == "granted"
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.DATA_EXPORTED)
    assert (event.supporter_id, event.actor) == (supporter.pk, membership_user)


def test_staff_edit_is_kept_in_the_change_history(staff_client, supporter):
    url = reverse("admin:crm_supporter_change", args=[supporter.pk])
    staff_client.post(
        url,
        {
            "email": supporter.email,
            "first_name": "Alice",
            "last_name": "Liddell",
            "postcode": "OX1 1DP",
            "country": "GB",
            "source": "staff",
            "subscriptions-TOTAL_FORMS": 1,
            "subscriptions-INITIAL_FORMS": 1,
            "subscriptions-0-id": supporter.subscriptions.get().pk,
            "subscriptions-0-supporter": supporter.pk,
            "consent_records-TOTAL_FORMS": 1,
            "consent_records-INITIAL_FORMS": 1,
            "consent_records-0-id": supporter.consent_records.get().pk,
            "consent_records-0-supporter": supporter.pk,
        },
    )
    supporter.refresh_from_db()
    assert supporter.postcode == "OX1 1DP"
    latest, previous = supporter.history.all()[:2]
    assert latest.diff_against(previous).changed_fields == ["last_name", "postcode"]
    history = staff_client.get(reverse("admin:crm_supporter_history", args=[supporter.pk]))
    assert history.status_code == 200


def test_staff_suppress_an_address_and_only_its_hash_is_kept(staff_client, supporter):
    response = staff_client.post(
        reverse("admin:crm_suppression_add"),
        {"email_to_suppress": "Alice@example.org", "reason": "staff", "note": "asked by phone"},
    )
    assert response.status_code == 302
    assert supporter.is_suppressed() is True
    assert "alice" not in str(list(Suppression.objects.values()))
