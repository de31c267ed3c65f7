"""Claiming deliveries: mailings.sql.deliveries_claim leases what the ORM twin leases.

mailings.sending.claims.deliveries_claim takes the statement (FOR UPDATE SKIP
LOCKED) on PostgreSQL and the ORM elsewhere; each test claims the same
deliveries both ways and compares the ids and every delivery's state.
"""

import datetime

import pytest
from django.utils import timezone

from mailings.models import Delivery, Mailing
from mailings.sending import claims
from tests.factories import DeliveryFactory, MailingFactory, SupporterFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def deliveries():
    """Every delivery as it stands (claims add none, so their ids compare too)."""
    return list(Delivery.objects.order_by("pk").values())


def heartbeats():
    return dict(Mailing.objects.values_list("pk", "heartbeat_at"))


@pytest.fixture
def sending(db):
    """A mailing being sent, its deliveries in every state a claim must tell apart."""
    mailing = MailingFactory(status=Mailing.Status.SENDING)
    now = timezone.now()
    hour = datetime.timedelta(hours=1)

    def delivery(**state):
        return DeliveryFactory(mailing=mailing, supporter=SupporterFactory(), **state)

    for _ in range(3):
        delivery()
    delivery(retry_at=now - hour, attempts=2, dispatched_at=now - 2 * hour)
    delivery(retry_at=now + hour, attempts=1)
    delivery(status=Delivery.Status.SENDING, claimed_by="other", claimed_until=now + hour)
    delivery(status=Delivery.Status.SENT, attempts=1)
    delivery(status=Delivery.Status.FAILED, attempts=5)
    delivery()
    # Another mailing's queued delivery is never part of this one's claim.
    DeliveryFactory(mailing=MailingFactory(status=Mailing.Status.SENDING))
    return mailing


def claim(mailing, limit):
    def run():
        ids = claims.deliveries_claim(mailing_id=mailing.pk, limit=limit, worker="worker-1")
        return ids, deliveries(), heartbeats()

    return run


@pytest.mark.parametrize("limit", [1, 3, 100])
def test_a_claim_leases_the_same_deliveries_either_way(both_ways, sending, limit):
    """The lowest ids first, queued ones whose retry time has come, never another mailing's."""
    statement, orm = both_ways("mailings", claim(sending, limit))

    assert statement == orm
    ids, _, beats = statement
    claimable = (
        Delivery.objects.filter(mailing=sending)
        .claimable(timezone.now())
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert ids == list(claimable[:limit])
    assert beats[sending.pk] is not None


def test_claims_take_the_rest_in_turn_either_way(both_ways, sending):
    def claim_twice():
        first = claims.deliveries_claim(mailing_id=sending.pk, limit=2, worker="worker-1")
        second = claims.deliveries_claim(mailing_id=sending.pk, limit=10, worker="worker-2")
        third = claims.deliveries_claim(mailing_id=sending.pk, limit=10, worker="worker-3")
        return first, second, third, deliveries()

    statement, orm = both_ways("mailings", claim_twice)

    assert statement == orm
    first, second, third, _ = statement
    assert len(first) == 2
    assert len(second) == 3
    assert third == []
    assert max(first) < min(second)


@pytest.mark.parametrize(
    "status", [Mailing.Status.PAUSED, Mailing.Status.CANCELLED, Mailing.Status.SENT]
)
def test_nothing_is_claimed_for_a_mailing_not_sending_either_way(both_ways, sending, status):
    Mailing.objects.filter(pk=sending.pk).update(status=status)
    before = deliveries(), heartbeats()

    statement, orm = both_ways("mailings", claim(sending, 100))

    assert statement == orm == ([], *before)
