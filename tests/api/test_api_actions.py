"""Actions through the API: listed with their exact wordings, signed as their page would."""

import pytest

from crm.models import PartnerConsent, Subscription
from mailings.actions.models import Action, Signature
from project.api import webhooks
from project.api.models import Event, WebhookDelivery
from project.api.webhooks import webhook_endpoint_create
from tests import factories
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def petition(db, interest):
    """An open petition co-sponsored by Aegis Trust, signed with the charity's box and Aegis's."""
    from mailings.actions.models import ActionPartner

    aegis = factories.PartnerOrganisationFactory(slug="aegis", name="Aegis Trust")
    action = Action.objects.create(
        kind=Action.Kind.PETITION,
        title="Protect civilians in El Fasher",
        slug="el-fasher",
        status=Action.Status.OPEN,
        summary="Tell the Foreign Secretary to act.",
        target="The Foreign Secretary",
        goal=10_000,
    )
    action.interests.add(interest)
    ActionPartner.objects.create(
        action=action,
        partner=aegis,
        wording="Yes, Aegis Trust may email me about its work to prevent genocide.",
        privacy_url="https://www.aegistrust.org/privacy/",
        shared_fields=["first_name"],
    )
    return action


def _sign(client, headers, **body):
    return client.post(
        "/api/actions/el-fasher/sign",
        {"email": "signer@example.org", "first_name": "Sol", **body},
        content_type="application/json",
        **headers,
    )


def test_actions_are_listed_with_the_wordings_to_show(client, auth, petition):
    (listed,) = client.get("/api/actions", **auth).json()
    assert listed["slug"] == "el-fasher"
    assert listed["interests"] == ["r2p"]
    assert listed["opt_in_wording_version"]
    assert listed["cosponsors"][0]["partner"] == "aegis"
    assert listed["cosponsors"][0]["shared_fields"] == ["first_name"]


def test_signing_counts_once_and_records_consent_only_for_boxes_ticked(
    settings, client, auth, petition
):
    """The opt-in needs the version of the wording shown; a second signature is not counted."""
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    version = client.get("/api/actions", **auth).json()[0]["opt_in_wording_version"]

    without_version = _sign(client, auth, opt_in=True)
    assert without_version.status_code == 422
    assert "opt_in_wording_version" in without_version.json()["errors"][0]["message"]
    old_version = _sign(client, auth, opt_in=True, opt_in_wording_version="old")
    assert old_version.status_code == 422
    assert "wording has changed" in old_version.json()["message"]

    first = _sign(client, auth, opt_in=True, opt_in_wording_version=version)
    again = _sign(client, auth, partner_opt_ins=["aegis"])

    assert first.json() == {"counted": True, "confirmation": "confirmed"}
    assert again.json()["counted"] is False
    assert Signature.objects.count() == 1
    assert Subscription.objects.filter(supporter__email="signer@example.org").count() == 1
    assert PartnerConsent.objects.filter(partner__slug="aegis").count() == 1


def test_signing_never_subscribes_someone_who_opted_out(
    settings, client, auth, petition, opted_out_supporter
):
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    version = client.get("/api/actions", **auth).json()[0]["opt_in_wording_version"]
    response = _sign(
        client, auth, email="bob@example.org", opt_in=True, opt_in_wording_version=version
    )
    assert response.json()["counted"] is True
    assert not Subscription.objects.filter(
        supporter=opted_out_supporter, status="subscribed"
    ).exists()


def test_unknown_or_closed_action(client, auth, petition):
    assert (
        client.post(
            "/api/actions/nope/sign",
            {"email": "a@example.org"},
            content_type="application/json",
            **auth,
        ).status_code
        == 404
    )
    Action.objects.filter(pk=petition.pk).update(status=Action.Status.CLOSED)
    closed = _sign(client, auth)
    assert closed.status_code == 422
    assert "not taking signatures" in closed.json()["message"]


def test_signing_needs_its_scope(client, make_key, petition):
    _, reader = make_key(scopes=["supporters:read"])
    assert _sign(client, reader).status_code == 403


def test_signature_is_a_webhook_event(settings, client, auth, petition, receiver):
    """A signature, by the API or the page, becomes an action.signed delivery."""
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    hook = webhook_endpoint_create(name="Campaign tools", url=receiver.url, events=[Event.SIGNED])
    SupporterFactory(email="signer@example.org")
    _sign(client, auth, source="newsletter")
    webhooks.webhooks_fan_out()
    delivery = WebhookDelivery.objects.get(endpoint=hook)
    assert (delivery.event, delivery.data) == (
        Event.SIGNED,
        {"action": "el-fasher", "source": "newsletter"},
    )
