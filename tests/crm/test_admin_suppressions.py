"""Taking an address off the suppression list leaves a trace in the audit trail."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from crm import services
from crm.models import AuditEvent, Suppression

pytestmark = pytest.mark.django_db


def test_deleting_an_entry_records_who_and_what_it_said(client, superuser):
    entry = services.suppression_add(
        email="left@example.org", reason=Suppression.Reason.STAFF, note="asked by phone"
    )
    client.force_login(superuser)

    response = client.post(
        reverse("admin:crm_suppression_delete", args=[entry.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.UNSUPPRESSED)
    assert event.actor == superuser
    assert event.detail["reason"] == "staff"
    assert event.detail["note"] == "asked by phone"
    assert "left@example.org" not in str(event.detail)


def test_deleting_several_records_each(client, superuser):
    for n in range(3):
        services.suppression_add(email=f"gone{n}@example.org", reason=Suppression.Reason.COMPLAINT)
    client.force_login(superuser)

    client.post(
        reverse("admin:crm_suppression_changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: list(Suppression.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert not Suppression.objects.exists()
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.UNSUPPRESSED).count() == 3


def test_membership_staff_cannot_delete_an_entry(client, membership_user):
    entry = services.suppression_add(email="kept@example.org", reason=Suppression.Reason.STAFF)
    client.force_login(membership_user)

    response = client.post(
        reverse("admin:crm_suppression_delete", args=[entry.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Suppression.objects.filter(pk=entry.pk).exists()
