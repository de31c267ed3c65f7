"""Adding and updating supporters through the API, with consent, never resubscribing a "no"."""

import pytest

from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter, Suppression
from crm.services import supporter_unsubscribe, suppression_add
from tests.api.conftest import consent
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


def _batch(client, auth, *supporters):
    return client.post(
        "/api/supporters/batch",
        {"supporters": list(supporters)},
        content_type="application/json",
        **auth,
    )


def test_new_supporter_is_subscribed_with_the_consent_evidence(client, auth, full_key, interest):
    """The consent record keeps the wording, version, method, source and when they agreed."""
    response = client.post(
        "/api/supporters",
        {
            "email": " Dana@Example.org ",
            "first_name": "Dana",
            "country": "fr",
            "interests": ["r2p"],
            "consent": consent(),
        },
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 200
    result = response.json()
    assert result["outcome"] == "created"
    assert result["subscribed"] == ["r2p"]
    dana = Supporter.objects.get(pk=result["id"])
    assert (dana.email, dana.first_name, dana.country.code) == ("Dana@Example.org", "Dana", "FR")
    record = ConsentRecord.objects.get(supporter=dana)
    assert record.wording == consent()["wording"]
    assert record.wording_version == "v3"
    assert record.method == "signup_form"
    assert f"({full_key[0].prefix})" in record.actor_label
    assert "aegis-petition-2026" in record.actor_label
    assert "agreed 2026-11-30 10:00 UTC" in record.actor_label
    assert dana.history.count() == 1


def test_consent_evidence_is_required_for_any_subscription(client, auth, interest):
    """Interests without consent are refused with the field named, and nothing is written."""
    response = _batch(
        client,
        auth,
        {"email": "ok@example.org"},
        {"email": "eve@example.org", "interests": ["r2p"]},
        {"email": "fay@example.org", "interests": ["r2p"], "consent": consent(wording="")},
        {"email": "gus@example.org", "interests": ["r2p"], "consent": consent(method="guess")},
    )
    assert response.status_code == 422
    errors = {error["field"]: error["message"] for error in response.json()["errors"]}
    assert "consent is required" in errors["supporters[1]"]
    assert "supporters[2].consent.wording" in errors
    assert "must be one of" in errors["supporters[3].consent.method"]
    assert Supporter.objects.count() == 0


def test_one_bad_row_saves_nothing_and_names_the_row(client, auth, interest):
    """A batch is one transaction: a wrong address or interest anywhere writes nothing."""
    good = {"email": "ok@example.org", "interests": ["r2p"], "consent": consent()}
    bad_email = _batch(client, auth, good, {"email": "not-an-address"})
    bad_interest = _batch(
        client, auth, good, {"email": "x@example.org", "interests": ["nope"], "consent": consent()}
    )
    twice = _batch(client, auth, good, {"email": "OK@example.org"})

    assert bad_email.status_code == bad_interest.status_code == twice.status_code == 422
    assert bad_email.json()["errors"] == [
        {"field": "supporters[1].email", "message": "is not a valid email address"}
    ]
    assert bad_interest.json()["errors"][0]["field"] == "supporters[1].interests[0]"
    assert "'nope' is not an interest" in bad_interest.json()["errors"][0]["message"]
    assert "appears twice" in twice.json()["errors"][0]["message"]
    assert Supporter.objects.count() == 0
    assert ConsentRecord.objects.count() == 0


def test_batch_is_limited_to_a_thousand(client, auth):
    rows = [{"email": f"p{n}@example.org"} for n in range(1001)]
    response = _batch(client, auth, *rows)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "supporters"


def test_upsert_never_resubscribes_someone_who_opted_out_or_is_suppressed(
    client, auth, interest, other_interest, supporter, opted_out_supporter
):
    """Unsubscribed from all, from the interest, or suppressed: left as they are."""
    supporter_unsubscribe(supporter=supporter, interest=interest, method="email_link")
    bounced = SupporterFactory(email="bounced@example.org", status="bounced")
    suppression_add(email="gone@example.org", reason=Suppression.Reason.COMPLAINT)
    yes = consent()
    response = _batch(
        client,
        auth,
        {"email": "alice@example.org", "interests": ["r2p", "events"], "consent": yes},
        {"email": "BOB@example.org", "first_name": "Robert", "interests": ["r2p"], "consent": yes},
        {"email": "bounced@example.org", "interests": ["r2p"], "consent": yes},
        {"email": "gone@example.org", "interests": ["r2p"], "consent": yes},
    )

    assert response.status_code == 200
    alice, bob, bounce, gone = response.json()["results"]
    assert alice["subscribed"] == ["events"]
    assert alice["not_subscribed"] == {"r2p": "they unsubscribed from it"}
    assert (bob["outcome"], bob["reason"]) == ("skipped", "unsubscribed from all email")
    assert (bounce["outcome"], bounce["reason"]) == ("skipped", "their address bounced")
    assert gone["outcome"] == "skipped"
    assert "complained" in gone["reason"]
    assert gone["id"] is None
    assert not Supporter.objects.with_email("gone@example.org").exists()
    opted_out_supporter.refresh_from_db()
    assert opted_out_supporter.first_name == "Bob"
    assert not Subscription.objects.filter(
        supporter__in=[opted_out_supporter, bounced], status="subscribed"
    ).exists()
    assert Subscription.objects.get(supporter=supporter, interest=interest).status == (
        "unsubscribed"
    )


def test_existing_supporter_keeps_our_values_and_gains_only_missing_ones(client, auth, supporter):
    """An upsert fills empty fields; it does not overwrite what Rally holds."""
    response = _batch(
        client,
        auth,
        {"email": "ALICE@example.org", "first_name": "Alicia", "phone": "020 7946 0000"},
        {"email": "alice2@example.org"},
    )
    first, second = response.json()["results"]
    assert first["outcome"] == "updated"
    assert second["outcome"] == "created"
    supporter.refresh_from_db()
    assert (supporter.first_name, supporter.phone) == ("Alice", "020 7946 0000")
    assert _batch(client, auth, {"email": "alice@example.org"}).json()["counts"]["unchanged"] == 1


def test_each_upsert_call_is_one_audit_event_besides_each_consent(client, auth, full_key, interest):
    """The audit trail gets the call (counts, key) and one event per consent granted."""
    _batch(
        client,
        auth,
        {"email": "a1@example.org", "interests": ["r2p"], "consent": consent()},
        {"email": "a2@example.org", "interests": ["r2p"], "consent": consent()},
        {"email": "a3@example.org"},
    )
    call = AuditEvent.objects.get(kind=AuditEvent.Kind.IMPORTED)
    assert call.source == f"api:{full_key[0].prefix}"
    assert call.detail["created"] == 3
    assert call.detail["subscriptions"] == 2
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.CONSENT_GRANTED).count() == 2
    assert "a1@example.org" not in str(call.detail)


def test_partner_key_records_the_partner_and_learns_nothing_of_others(
    client, make_key, partner, interest, supporter
):
    """A partner's consents name the partner; its answers do not say who Rally already holds."""
    _, headers = make_key(partner=partner)
    response = _batch(
        client,
        headers,
        {"email": "alice@example.org", "first_name": "X"},
        {"email": "new@example.org", "interests": ["r2p"], "consent": consent()},
    )
    existing, new = response.json()["results"]
    assert existing["outcome"] == new["outcome"] == "accepted"
    assert existing["id"] is None
    assert response.json()["counts"] == {"accepted": 2, "skipped": 0, "subscriptions": 1}
    record = ConsentRecord.objects.get(supporter__email="new@example.org")
    assert record.partner == partner
    assert Supporter.objects.get(email="new@example.org").partner == partner
