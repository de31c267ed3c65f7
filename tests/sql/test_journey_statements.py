"""Each journeys statement of mailings/sql.py does what its docstring says, on every database.

The claim, the delivery insert and the visits insert have no ORM twin; they run here on
SQLite and (in CI) on PostgreSQL alike.
"""

import datetime

import pytest

from mailings import sql
from mailings.journeys.models import Enrolment, Journey, JourneyStep, StepVisit
from mailings.models import Delivery, Mailing
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db

MOMENT = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def journey(db):
    journey = Journey.objects.create(name="Welcome", status=Journey.Status.LIVE)
    JourneyStep.objects.create(journey=journey, position=1, kind="end")
    return journey


def _enrol(journey, due_at, state=Enrolment.State.ACTIVE):
    return Enrolment.objects.create(
        journey=journey,
        supporter=SupporterFactory(),
        step=journey.steps.get(),
        state=state,
        due_at=due_at,
    )


def test_enrolments_claim_takes_the_earliest_due_up_to_the_limit_and_leases_them(journey):
    late = _enrol(journey, MOMENT - MINUTE)
    early = _enrol(journey, MOMENT - 2 * MINUTE)
    earliest = _enrol(journey, MOMENT - 3 * MINUTE)
    _enrol(journey, MOMENT + MINUTE)  # not due
    _enrol(journey, MOMENT - MINUTE, state=Enrolment.State.DONE)  # finished
    until = MOMENT + 5 * MINUTE

    claimed = sql.enrolments_claim(journey_id=journey.pk, limit=2, now=MOMENT, until=until)

    assert sorted(claimed) == sorted([earliest.pk, early.pk])
    assert set(Enrolment.objects.filter(due_at=until).values_list("pk", flat=True)) == {
        earliest.pk,
        early.pk,
    }
    again = sql.enrolments_claim(journey_id=journey.pk, limit=5, now=MOMENT, until=until)
    assert again == [late.pk]
    assert sql.enrolments_claim(journey_id=journey.pk, limit=5, now=MOMENT, until=until) == []


def test_deliveries_insert_rounds_queues_one_per_supporter_and_round_once():
    mailing = Mailing.objects.create(name="Journey email", kind=Mailing.Kind.JOURNEY)
    ann, ben = SupporterFactory(), SupporterFactory()

    sql.deliveries_insert_rounds(
        mailing_id=mailing.pk, pairs=[(ann.pk, 1), (ben.pk, 1), (ann.pk, 2)], now=MOMENT
    )
    sql.deliveries_insert_rounds(mailing_id=mailing.pk, pairs=[(ann.pk, 1)], now=MOMENT)

    rows = Delivery.objects.filter(mailing=mailing)
    assert sorted(rows.values_list("supporter_id", "round")) == sorted(
        [(ann.pk, 1), (ben.pk, 1), (ann.pk, 2)]
    )
    assert set(rows.values_list("status", "attempts", "created_at")) == {("queued", 0, MOMENT)}


def test_visits_insert_records_each_step_reached_once(journey):
    enrolment = _enrol(journey, MOMENT)
    step = journey.steps.get()

    sql.visits_insert(pairs=[(enrolment.pk, step.pk), (enrolment.pk, step.pk)], now=MOMENT)
    sql.visits_insert(pairs=[(enrolment.pk, step.pk)], now=MOMENT + MINUTE)

    visit = StepVisit.objects.get()
    assert (visit.enrolment_id, visit.step_id, visit.at) == (enrolment.pk, step.pk, MOMENT)
