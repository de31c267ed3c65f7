"""A segment a mailing still to be sent uses cannot be deleted; its changes show on the mailing.

Deleting or redefining such a segment would silently change who receives the mailing.
"""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from crm.models import AuditEvent, Segment
from crm.services import SegmentInUse, segments_delete
from mailings.models import Mailing
from tests.factories import MailingFactory, SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


@pytest.fixture
def volunteers(db):
    return SegmentFactory(name="Volunteers", rules={"countries": ["GB"]})


@pytest.fixture
def appeal(volunteers):
    """A scheduled appeal that leaves out the volunteers."""
    mailing = MailingFactory(name="Spring appeal", status=Mailing.Status.SCHEDULED)
    mailing.exclude_segments.set([volunteers])
    return mailing


def delete_url(segment):
    return reverse("admin:crm_segment_delete", args=[segment.pk])


def test_delete_page_names_the_mailing_and_refuses(staff_client, volunteers, appeal):
    page = staff_client.get(delete_url(volunteers))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Mailing “Spring appeal” (scheduled) leaves out segment “Volunteers”" in text
    # Said as a refusal, not as Django's "would require deleting … protected objects".
    assert "cannot be deleted while a mailing that has not finished" in text
    assert "would require deleting" not in text

    response = staff_client.post(delete_url(volunteers), {"post": "yes"})

    assert Segment.objects.filter(pk=volunteers.pk).exists()
    assert "Spring appeal" in response.content.decode()


def test_bulk_delete_action_refuses_too(staff_client, volunteers, appeal):
    spare = SegmentFactory(name="Spare")
    draft = MailingFactory(name="Autumn draft")
    draft.include_segments.set([volunteers])

    response = staff_client.post(
        reverse("admin:crm_segment_changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [volunteers.pk, spare.pk],
            "post": "yes",
        },
    )

    content = response.content.decode()
    assert "cannot be deleted while a mailing that has not finished" in content
    assert "Mailing “Autumn draft” (draft) sends to segment “Volunteers”" in content
    assert "Mailing “Spring appeal” (scheduled) leaves out segment “Volunteers”" in content
    assert Segment.objects.filter(pk__in=[volunteers.pk, spare.pk]).count() == 2


def test_service_refuses_naming_the_mailing(volunteers, appeal):
    with pytest.raises(SegmentInUse, match="Mailing “Spring appeal” \\(scheduled\\) leaves out"):
        segments_delete(segments=[volunteers])
    assert Segment.objects.filter(pk=volunteers.pk).exists()


@pytest.mark.parametrize("status", [Mailing.Status.SENT, Mailing.Status.CANCELLED])
def test_a_segment_only_finished_mailings_used_can_be_deleted(staff_client, volunteers, status):
    old = MailingFactory(name="Last year", status=status)
    old.include_segments.set([volunteers])

    response = staff_client.post(delete_url(volunteers), {"post": "yes"})

    assert response.status_code == 302
    assert not Segment.objects.filter(pk=volunteers.pk).exists()
    assert list(old.include_segments.all()) == []


def test_changed_rules_show_on_the_mailing_page_with_the_new_audience(
    client, campaign_user, membership_user, interest, volunteers, appeal
):
    """Staff who wrote the mailing see who changed the segment, when, and the audience now."""
    for n, country in enumerate(["GB", "GB", "IE", "IE", "IE"]):
        SupporterFactory(email=f"reader{n}@example.org", country=country, subscribed_to=[interest])
    appeal.interests.set([interest])
    Mailing.objects.filter(pk=appeal.pk).update(updated_at=appeal.updated_at)
    client.force_login(campaign_user)
    mailing_page = reverse("admin:mailings_mailing_change", args=[appeal.pk])
    assert "Segment “Volunteers” changed" not in client.get(mailing_page).content.decode()

    client.force_login(membership_user)
    response = client.post(
        reverse("admin:crm_segment_change", args=[volunteers.pk]),
        {"name": "Volunteers", "description": "", "kind": "rules", "countries": "IE"},
        follow=True,
    )
    assert "Spring appeal" in response.content.decode()  # the editor is told too

    event = AuditEvent.objects.get(kind=AuditEvent.Kind.SEGMENT_CHANGED)
    assert event.actor == membership_user
    assert event.detail["rules_before"] == {"countries": ["GB"]}
    assert event.detail["rules"] == {"countries": ["IE"]}
    assert (event.detail["members_before"], event.detail["members"]) == (2, 3)
    client.force_login(campaign_user)
    content = client.get(mailing_page).content.decode()
    assert "Segment “Volunteers” changed on " in content
    assert "by maya, after this mailing was last saved: 2 members before, 3 members now." in content
    assert "This mailing would now go to 2 supporters." in content


def test_renaming_a_segment_is_not_a_change_of_audience(staff_client, volunteers, appeal):
    staff_client.post(
        reverse("admin:crm_segment_change", args=[volunteers.pk]),
        {"name": "Our volunteers", "description": "Thanks!", "kind": "rules", "countries": "GB"},
    )

    assert Segment.objects.get(pk=volunteers.pk).name == "Our volunteers"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SEGMENT_CHANGED).exists()
