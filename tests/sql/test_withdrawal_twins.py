"""Withdrawing from topics: crm.sql.subscriptions_withdraw writes exactly what the ORM twin writes.

crm.services.consent.supporter_unsubscribe (topics given) and
supporter_unsubscribe_from_mailing take the one statement on PostgreSQL and
the ORM elsewhere; each test runs both on the same data and compares.
"""

import pytest

from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter
from crm.services import consent_grant, supporter_unsubscribe, supporter_unsubscribe_from_mailing
from tests.factories import CampaignInterestFactory, MailingFactory, SupporterFactory
from tests.sql.conftest import rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def written(supporter):
    """What the database holds about `supporter`'s consent, but the ids of its rows."""
    return {
        "supporter": Supporter.objects.values("status", "updated_at").get(pk=supporter.pk),
        "subscriptions": rows(Subscription.objects.filter(supporter=supporter)),
        "consent records": rows(ConsentRecord.objects.filter(supporter=supporter)),
        "audit events": rows(AuditEvent.objects.filter(supporter=supporter)),
    }


@pytest.fixture
def unrelated(db):
    """A topic the tests never withdraw from."""
    return CampaignInterestFactory(slug="un", name="UK at the UN")


@pytest.fixture
def reader(interest, other_interest, unrelated):
    """Subscribed to all three topics; has left none."""
    person = SupporterFactory(email="reader@example.org")
    for topic in (interest, other_interest, unrelated):
        consent_grant(supporter=person, interest=topic, method="staff")
    return person


def test_withdrawing_from_topics_writes_what_the_orm_writes(
    both_ways, reader, interest, other_interest, unrelated, r2p_mailing, staff_member
):
    """A consent record and an audit event per topic left; those subscriptions end, others stay."""
    never_joined = CampaignInterestFactory(slug="never", name="Never joined")

    def withdraw():
        changed = supporter_unsubscribe(
            supporter=reader,
            interests=[interest, other_interest, never_joined],
            method=ConsentRecord.Method.ONE_CLICK,
            mailing=r2p_mailing,
            actor=staff_member,
            actor_label="One-click unsubscribe",
            wording="Stop these emails",
            ip_address="192.0.2.7",
        )
        return changed, written(reader)

    statement, orm = both_ways("crm", withdraw)

    assert statement == orm
    changed, state = statement
    assert changed is True
    withdrawn = [row for row in state["consent records"] if row["action"] == "withdrawn"]
    assert sorted(
        (row["interest_id"], row["mailing_id"], row["ip_address"]) for row in withdrawn
    ) == [
        (interest.pk, r2p_mailing.pk, "192.0.2.7"),
        (other_interest.pk, r2p_mailing.pk, "192.0.2.7"),
    ]
    assert sorted(
        event["detail"]["interest"]
        for event in state["audit events"]
        if event["kind"] == AuditEvent.Kind.CONSENT_WITHDRAWN
    ) == sorted([interest.slug, other_interest.slug])
    statuses = {row["interest_id"]: row["status"] for row in state["subscriptions"]}
    assert statuses == {
        interest.pk: "unsubscribed",
        other_interest.pk: "unsubscribed",
        unrelated.pk: "subscribed",
    }


def test_withdrawing_again_writes_nothing_either_way(both_ways, reader, interest):
    supporter_unsubscribe(supporter=reader, interest=interest, method="email_link")
    before = written(reader)

    def withdraw_again():
        changed = supporter_unsubscribe(supporter=reader, interest=interest, method="email_link")
        return changed, written(reader)

    statement, orm = both_ways("crm", withdraw_again)

    assert statement == orm == (False, before)


def test_leaving_a_mailings_topics_writes_what_the_orm_writes(
    both_ways, reader, interest, other_interest, unrelated, r2p_mailing
):
    """One-click: the mailing's topics come back in page order; only those still held are left."""
    hidden = CampaignInterestFactory(slug="hidden", name="Hidden", is_public=False, position=9)
    consent_grant(supporter=reader, interest=hidden, method="staff")
    r2p_mailing.interests.add(other_interest, hidden)
    # Already left one of the mailing's topics: nothing is written for it again.
    supporter_unsubscribe(supporter=reader, interest=other_interest, method="email_link")

    def leave():
        topics = supporter_unsubscribe_from_mailing(
            supporter=reader,
            mailing=r2p_mailing,
            method=ConsentRecord.Method.ONE_CLICK,
            actor_label="One-click unsubscribe",
        )
        return [topic.slug for topic in topics], written(reader)

    statement, orm = both_ways("crm", leave)

    assert statement == orm
    slugs, state = statement
    assert slugs == [other_interest.slug, interest.slug, hidden.slug]
    by_mailing = [row for row in state["consent records"] if row["mailing_id"] == r2p_mailing.pk]
    assert sorted(row["interest_id"] for row in by_mailing) == sorted([interest.pk, hidden.pk])
    assert {row["interest_id"]: row["status"] for row in state["subscriptions"]} == {
        interest.pk: "unsubscribed",
        other_interest.pk: "unsubscribed",
        hidden.pk: "unsubscribed",
        unrelated.pk: "subscribed",
    }


def test_a_mailing_sent_for_no_topic_leaves_nothing_either_way(both_ways, reader):
    no_topics = MailingFactory()
    before = written(reader)

    def leave():
        topics = supporter_unsubscribe_from_mailing(
            supporter=reader, mailing=no_topics, method=ConsentRecord.Method.ONE_CLICK
        )
        return list(topics), written(reader)

    statement, orm = both_ways("crm", leave)

    assert statement == orm == ([], before)
