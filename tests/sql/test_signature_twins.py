"""Signing an action: mailings.sql.signature_insert writes exactly what the ORM writes.

mailings.actions.services.action_sign takes the one statement on PostgreSQL
for a first signature, and the ORM elsewhere (and for everything the
statement leaves to it); each test runs both on the same data and compares
the supporters, their history and the signatures.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Supporter, Suppression, email_hash
from mailings import sql as mailings_sql
from mailings.actions import services
from mailings.actions.models import Action, ActionPartner, Signature
from tests.factories import PartnerOrganisationFactory, SupporterFactory
from tests.sql.conftest import rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def petition(interest):
    action = Action.objects.create(
        title="Protect civilians in El Fasher",
        slug="el-fasher",
        status=Action.Status.OPEN,
        goal=10_000,
    )
    action.interests.add(interest)
    ActionPartner.objects.create(
        action=action,
        partner=PartnerOrganisationFactory(slug="aegis", name="Aegis Trust"),
        wording="Yes, Aegis Trust may email me about its work to prevent genocide.",
        privacy_url="https://www.aegistrust.org/privacy/",
        shared_fields=["first_name", "postcode"],
    )
    return action


def signing(petition, **given):
    """Return act(): sign `petition` as `given` says, and return what it wrote."""

    def act():
        signature = services.action_sign(action=petition, **given)
        addresses = dict(Supporter.objects.values_list("pk", "email"))
        people = {"supporter_id": addresses.get}
        return {
            "counted": signature.counted,
            "confirmation": signature.confirmation,
            "first name": signature.supporter.first_name,
            "supporters": rows(Supporter.objects.all()),
            "history": rows(Supporter.history.all(), id=addresses.get),
            "signatures": rows(Signature.objects.all(), **people),
        }

    return act


@pytest.mark.parametrize(
    "given",
    [
        {"email": " Nadia@Example.org", "first_name": "Nadia", "postcode": "E1 6AN"},
        {
            "email": "amal@example.org",
            "first_name": "Amal",
            "last_name": "Hassan",
            "country": "SD",
            "opt_in": True,
            "partner_opt_ins": ["aegis"],
            "source": "aegis",
            "ip": "203.0.113.7",
            "page_url": "https://rally.example.org/act/el-fasher/",
        },
        {"email": "partner-only@example.org", "partner_opt_ins": ["aegis"]},
    ],
    ids=["nothing ticked", "both boxes, from a partner", "partner box only"],
)
def test_someone_new_signing_is_written_as_the_orm_writes_it(both_ways, petition, given, settings):
    settings.RALLY_RECORD_IP = True
    statement, orm = both_ways("mailings", signing(petition, **given))

    assert statement == orm
    assert statement["counted"] is True
    (supporter,) = statement["supporters"]
    assert supporter["source"] == Supporter.Source.PETITION
    assert [row["history_type"] for row in statement["history"]] == ["+"]


@pytest.mark.parametrize(
    "known",
    [
        {"first_name": "Nadia", "postcode": "E1 6AN"},  # nothing to fill in
        {"first_name": "", "postcode": "E1 6AN"},  # a blank the signer fills (the ORM way)
    ],
    ids=["details known", "a blank filled in"],
)
def test_a_known_supporter_signing_is_written_as_the_orm_writes_it(both_ways, petition, known):
    SupporterFactory(email="nadia@example.org", **known)
    given = {"email": "NADIA@example.org", "first_name": "Nadia", "postcode": "E1 6AN"}

    statement, orm = both_ways("mailings", signing(petition, **given, opt_in=True))

    assert statement == orm
    assert statement["first name"] == "Nadia"
    assert len(statement["signatures"]) == 1


@pytest.mark.parametrize(
    ("again", "confirmation"),
    [
        ({}, Signature.Confirmation.PENDING),  # the statement answers
        ({"partner_opt_ins": ["aegis"]}, Signature.Confirmation.PENDING),  # the ORM adds the box
    ],
    ids=["nothing new", "a new box ticked"],
)
def test_signing_again_is_counted_once_either_way(both_ways, petition, again, confirmation):
    services.action_sign(action=petition, email="nadia@example.org", opt_in=True)

    statement, orm = both_ways(
        "mailings", signing(petition, email="Nadia@example.org", source="aegis", **again)
    )

    assert statement == orm
    assert statement["counted"] is False
    assert statement["confirmation"] == confirmation
    assert [row["source"] for row in statement["signatures"]] == [""]


def test_an_erased_address_cannot_sign_either_way(both_ways, petition):
    Suppression.objects.create(
        email_hash=email_hash("gone@example.org"), reason=Suppression.Reason.ERASURE
    )

    def act():
        with pytest.raises(services.SignatureRejected, match="cannot sign"):
            services.action_sign(action=petition, email="Gone@example.org")
        return rows(Supporter.objects.all()), rows(Signature.objects.all())

    statement, orm = both_ways("mailings", act)

    assert statement == orm == ([], [])


def test_someone_new_signing_is_one_statement_on_postgresql(petition):
    """The statement runs (not the ORM twin), alone: no transaction around it.

    (The reads before it load the action's interests and co-sponsors, which
    the page keeps in memory.)
    """
    with CaptureQueriesContext(connection) as queries:
        signature = services.action_sign(
            action=petition, email="nadia@example.org", first_name="Nadia"
        )

    writes = [query["sql"][:10] for query in queries if not query["sql"].startswith("SELECT")]
    assert writes == ["WITH found"]
    assert signature.counted is True
    saved = Signature.objects.select_related("supporter").get(pk=signature.pk)
    assert saved.supporter_id == signature.supporter.pk
    assert saved.supporter.first_name == "Nadia"
    assert saved.supporter.history.get().history_type == "+"


def test_the_statement_answers_someone_who_signed_with_their_signature(petition):
    """Ticking nothing, they get theirs back; ticking a box is left to the ORM way."""
    first = services.action_sign(action=petition, email="nadia@example.org")
    person = Supporter(email="nadia@example.org", email_hash=email_hash("nadia@example.org"))
    again = Signature(action=petition, source="aegis")

    answer = mailings_sql.signature_insert(supporter=person, signature=again, given={})
    assert answer == (first.pk, first.supporter.pk, "", False, Signature.Confirmation.NONE)

    again.confirmation = Signature.Confirmation.PENDING
    assert mailings_sql.signature_insert(supporter=person, signature=again, given={}) is None
    assert list(Signature.objects.values_list("pk", "source")) == [(first.pk, "")]
