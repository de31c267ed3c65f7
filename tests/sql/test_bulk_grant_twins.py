"""Subscribing many with evidence: crm.sql.subscriptions_grant writes exactly what the ORM writes.

crm.services.consent.supporters_subscribe (the API's batch upsert, staff bulk
subscribes) takes the one statement on PostgreSQL and the ORM elsewhere; the
test runs both on the same data and compares.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm import sql as crm_sql
from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter
from crm.services import consent_grant, supporter_unsubscribe, supporters_subscribe
from tests.factories import PartnerOrganisationFactory, SupporterFactory
from tests.sql.conftest import rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_subscribing_many_with_evidence_writes_what_the_orm_writes(
    both_ways, interest, staff_member
):
    partner = PartnerOrganisationFactory(slug="aegis-trust")
    newcomers = [SupporterFactory(email=f"new{n}@example.org") for n in range(3)]
    already = SupporterFactory(email="already@example.org")
    consent_grant(supporter=already, interest=interest, method="staff")
    left = SupporterFactory(email="left@example.org")
    consent_grant(supporter=left, interest=interest, method="staff")
    supporter_unsubscribe(supporter=left, interest=interest, method="email_link")
    everyone = [*newcomers, already, left]
    addresses = dict(Supporter.objects.values_list("pk", "email"))

    def subscribe():
        outcome = supporters_subscribe(
            supporters=Supporter.objects.filter(pk__in=[s.pk for s in everyone]),
            interest=interest,
            actor=staff_member,
            method=ConsentRecord.Method.SIGNUP_FORM,
            actor_label="API key Bench",
            wording="Yes, email me about the campaign to prevent atrocities.",
            wording_version="v3",
            partner=partner,
        )
        people = {"supporter_id": addresses.get}
        return outcome, {
            "subscriptions": rows(Subscription.objects.all(), **people),
            "consent records": rows(ConsentRecord.objects.all(), **people),
            "audit events": rows(AuditEvent.objects.all(), **people),
        }

    statement, orm = both_ways("crm", subscribe)

    assert statement == orm
    outcome, written = statement
    assert (outcome.subscribed, outcome.already, outcome.opted_out) == (3, 1, 1)
    granted = [
        row
        for row in written["consent records"]
        if row["wording_version"] == "v3" and row["action"] == "granted"
    ]
    assert sorted(row["supporter_id"] for row in granted) == sorted(s.email for s in newcomers)
    assert {row["partner_id"] for row in granted} == {partner.pk}


def test_on_postgresql_one_statement_writes_them_all(monkeypatch, interest, staff_member):
    """The statement runs (not the ORM twin) and inserts the three tables' rows at once."""
    calls = []
    statement = crm_sql.subscriptions_grant

    def counted(**kwargs):
        calls.append(kwargs["supporter_ids"])
        with CaptureQueriesContext(connection) as queries:
            statement(**kwargs)
        assert len(queries) == 1

    monkeypatch.setattr(crm_sql, "subscriptions_grant", counted)
    people = [SupporterFactory(email=f"p{n}@example.org") for n in range(5)]

    supporters_subscribe(
        supporters=Supporter.objects.filter(pk__in=[p.pk for p in people]),
        interest=interest,
        actor=staff_member,
        method=ConsentRecord.Method.STAFF,
    )

    assert calls == [sorted(p.pk for p in people)]
    assert Subscription.objects.filter(interest=interest, status="subscribed").count() == 5
    assert ConsentRecord.objects.filter(interest=interest, action="granted").count() == 5
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.CONSENT_GRANTED).count() == 5
