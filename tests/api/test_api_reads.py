"""Reading supporters, interests and mailing results; unsubscribing through the API."""

import pytest
from django.utils import timezone

from crm.models import AuditEvent, ConsentRecord
from crm.services import consent_grant, partner_consent_grant
from mailings.models import Delivery, Mailing
from tests.factories import DeliveryFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def _lookup(client, headers, email):
    return client.post(
        "/api/supporters/lookup", {"email": email}, content_type="application/json", **headers
    )


def test_lookup_returns_subscriptions_and_is_audited(client, auth, full_key, supporter):
    """A read of a supporter is an export in the audit trail, naming the key, not the address."""
    response = _lookup(client, auth, "ALICE@example.org")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == supporter.pk
    assert data["status"] == "active"
    assert data["suppressed"] is False
    assert [(s["interest"], s["status"]) for s in data["subscriptions"]] == [("r2p", "subscribed")]
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert (event.supporter_id, event.source) == (supporter.pk, f"api:{full_key[0].prefix}")
    assert client.get(f"/api/supporters/{supporter.pk}", **auth).json()["email"] == (
        "alice@example.org"
    )
    assert _lookup(client, auth, "nobody@example.org").status_code == 404


def test_partner_key_sees_only_the_partners_supporters(client, make_key, partner, interest):
    """A partner's key finds those who came from it, with what its sync file shows, no more."""
    theirs = SupporterFactory(email="theirs@example.org", partner=partner, postcode="N1 9GU")
    consent_grant(supporter=theirs, interest=interest, method="staff", actor_label="t")
    shared = SupporterFactory(email="shared@example.org")
    consent_grant(supporter=shared, interest=interest, method="partner_import", partner=partner)
    ours = SupporterFactory(email="ours@example.org")
    _, headers = make_key(partner=partner)

    found = _lookup(client, headers, "theirs@example.org").json()
    assert "postcode" not in found or found["postcode"] is None
    assert _lookup(client, headers, "shared@example.org").status_code == 200
    assert _lookup(client, headers, "ours@example.org").status_code == 404
    assert client.get(f"/api/supporters/{ours.pk}", **headers).status_code == 404
    unsubscribe = client.post(
        "/api/supporters/unsubscribe",
        {"email": "ours@example.org", "source": "partner-crm"},
        content_type="application/json",
        **headers,
    )
    assert unsubscribe.status_code == 404


def test_unsubscribe_from_one_interest_or_all(client, auth, full_key, supporter, other_interest):
    """Leaving an interest keeps the rest; naming none leaves all email; both are recorded."""
    consent_grant(supporter=supporter, interest=other_interest, method="staff", actor_label="t")

    def unsubscribe(**body):
        return client.post(
            "/api/supporters/unsubscribe",
            {"email": "alice@example.org", "source": "partner-crm", **body},
            content_type="application/json",
            **auth,
        ).json()

    assert unsubscribe(interests=["events"]) == {
        "id": supporter.pk,
        "changed": True,
        "status": "active",
    }
    assert unsubscribe(interests=["events"])["changed"] is False
    assert unsubscribe()["status"] == "unsubscribed"
    withdrawn = ConsentRecord.objects.filter(supporter=supporter, action="withdrawn")
    assert withdrawn.count() == 2
    assert all(f"({full_key[0].prefix})" in r.actor_label for r in withdrawn)
    bad = client.post(
        "/api/supporters/unsubscribe",
        {"email": "alice@example.org", "interests": ["nope"], "source": "x"},
        content_type="application/json",
        **auth,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"field": "interests", "message": "'nope' is not an interest"}]


def test_interests_are_listed_in_order(client, auth, interest, other_interest):
    slugs = [item["slug"] for item in client.get("/api/interests", **auth).json()]
    assert set(slugs) == {"r2p", "events"}


def test_mailing_results(client, auth, interest, supporter):
    """Sent mailings with their figures; a draft is not listed."""
    sent = Mailing.objects.create(
        name="Briefing", subject="Duty to prevent", status=Mailing.Status.SENT,
        finished_at=timezone.now(),
    )  # fmt: skip
    sent.interests.set([interest])
    Mailing.objects.create(name="Draft", subject="Not yet")
    DeliveryFactory(mailing=sent, supporter=supporter, status=Delivery.Status.SENT)

    listed = client.get("/api/mailings", **auth).json()
    assert [item["name"] for item in listed] == ["Briefing"]
    one = client.get(f"/api/mailings/{sent.pk}", **auth).json()
    assert one["figures"]["sent"] == 1
    assert one["interests"] == ["r2p"]
    assert client.get("/api/mailings/999999", **auth).status_code == 404


def test_partner_key_sees_of_an_opt_in_only_what_they_agreed_to_share(
    client, make_key, partner, interest
):
    """Someone who ticked only the partner's box on an action page: the address, the fields
    they agreed to share and when; none of our topics or status."""
    signer = SupporterFactory(email="signer@example.org", first_name="Nadia", last_name="Osman",
                              postcode="LS1 4AP")  # fmt: skip
    consent_grant(supporter=signer, interest=interest, method="staff", actor_label="t")
    partner_consent_grant(supporter=signer, partner=partner, fields=["first_name"])
    _, headers = make_key(partner=partner)

    found = _lookup(client, headers, "signer@example.org").json()

    assert found["email"] == "signer@example.org"
    assert found["first_name"] == "Nadia"
    assert found["opted_in_at"]
    assert found["last_name"] is None and found["postcode"] is None
    assert found["subscriptions"] is None and found["status"] is None
