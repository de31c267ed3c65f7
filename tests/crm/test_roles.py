"""What each staff role may and may not do, checked through the admin as a person would."""

import pytest
from django.urls import reverse

from crm.models import Supporter
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db


def test_membership_staff_manage_supporters_but_cannot_erase_or_send(
    client, membership_user, supporter
):
    client.force_login(membership_user)
    assert client.get(reverse("admin:crm_supporter_changelist")).status_code == 200
    assert client.get(reverse("admin:crm_supporter_add")).status_code == 200
    assert client.get(reverse("admin:crm_segment_add")).status_code == 200
    change = client.get(reverse("admin:crm_supporter_change", args=[supporter.pk]))
    assert change.status_code == 200
    assert client.get(reverse("admin:crm_supporter_erase", args=[supporter.pk])).status_code == 403
    client.post(reverse("admin:crm_supporter_erase", args=[supporter.pk]))
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.ACTIVE
    assert membership_user.has_perm("mailings.send_mailing") is False
    assert membership_user.has_perm("mailings.add_mailing") is False


def test_campaign_managers_read_supporters_but_cannot_change_them(client, campaign_user, supporter):
    client.force_login(campaign_user)
    assert client.get(reverse("admin:crm_supporter_changelist")).status_code == 200
    assert client.get(reverse("admin:crm_supporter_add")).status_code == 403
    page = client.get(reverse("admin:crm_supporter_change", args=[supporter.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    client.post(
        reverse("admin:crm_supporter_change", args=[supporter.pk]),
        {"email": "changed@example.org", "country": "GB", "source": "staff"},
    )
    supporter.refresh_from_db()
    assert supporter.email == "alice@example.org"
    assert campaign_user.has_perm("mailings.send_mailing") is True
    assert campaign_user.has_perm("crm.export_supporter_data") is False
    url = reverse("admin:crm_supporter_export_data", args=[supporter.pk])
    assert client.get(url).status_code == 403


def test_campaign_managers_cannot_edit_segments(client, campaign_user):
    segment = SegmentFactory()
    client.force_login(campaign_user)
    assert client.get(reverse("admin:crm_segment_add")).status_code == 403
    assert client.get(reverse("admin:crm_segment_change", args=[segment.pk])).status_code == 200


def test_superuser_can_erase(client, superuser, supporter):
    client.force_login(superuser)
    url = reverse("admin:crm_supporter_erase", args=[supporter.pk])
    assert client.get(url).status_code == 200
    client.post(url)
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.ERASED


def test_staff_without_a_role_see_nothing(client, django_user_model, supporter):
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(nobody)
    assert client.get(reverse("admin:crm_supporter_changelist")).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, supporter):
    response = client.get(reverse("admin:crm_supporter_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    response = client.get(reverse("admin:crm_supporter_export_data", args=[supporter.pk]))
    assert response.status_code == 302
