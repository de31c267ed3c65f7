"""On PostgreSQL, withdrawing from topics is one statement: it must write what the ORM does."""

import itertools
import threading

import pytest
from django.db import connection

from crm.models import AuditEvent, ConsentRecord, Subscription
from crm.services import consent_grant, supporter_unsubscribe
from tests.factories import SupporterFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

# What the two ways of writing may differ in: identity and time.
IGNORED = {"id", "supporter_id", "created_at"}


def written(supporter):
    records = [
        {field: value for field, value in row.items() if field not in IGNORED}
        for row in ConsentRecord.objects.filter(supporter=supporter, action="withdrawn")
        .order_by("interest__slug")
        .values()
    ]
    events = [
        {field: value for field, value in row.items() if field not in IGNORED}
        for row in AuditEvent.objects.filter(supporter=supporter, kind="consent_withdrawn")
        .order_by("pk")
        .values()
    ]
    subscriptions = list(
        Subscription.objects.filter(supporter=supporter)
        .order_by("interest__slug")
        .values_list("interest__slug", "status")
    )
    return records, events, subscriptions


def withdraw(supporter, topics, **details):
    return supporter_unsubscribe(
        supporter=supporter,
        interests=topics,
        method=ConsentRecord.Method.ONE_CLICK,
        actor_label="One-click unsubscribe",
        **details,
    )


def test_one_statement_writes_exactly_what_the_orm_writes(
    interest, other_interest, r2p_mailing, staff_member, monkeypatch
):
    people = SupporterFactory.create_batch(2)
    for person in people:
        for topic in (interest, other_interest):
            consent_grant(supporter=person, interest=topic, method="staff")
    details = {
        "mailing": r2p_mailing,
        "actor": staff_member,
        "wording": "Stop these emails",
        "ip_address": "192.0.2.7",
    }

    assert withdraw(people[0], [interest, other_interest], **details) is True
    with monkeypatch.context() as patched:
        # Any other database takes the ORM's way.
        patched.setattr(connection, "vendor", "another database")
        assert withdraw(people[1], [interest, other_interest], **details) is True

    one_statement, orm = written(people[0]), written(people[1])
    assert one_statement == orm
    records, events, subscriptions = one_statement
    assert [(r["action"], r["mailing_id"], r["ip_address"]) for r in records] == [
        ("withdrawn", r2p_mailing.pk, "192.0.2.7")
    ] * 2
    assert sorted(e["detail"]["interest"] for e in events) == sorted(
        [interest.slug, other_interest.slug]
    )
    assert {status for _, status in subscriptions} == {"unsubscribed"}


def test_withdrawing_again_writes_nothing(supporter, interest):
    assert withdraw(supporter, [interest]) is True
    assert withdraw(supporter, [interest]) is False
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1


@pytest.mark.django_db(transaction=True)
def test_joining_and_leaving_at_the_same_moment_keeps_a_true_record(supporter, interest):
    """A one-click and a re-subscribe for the same person and topic, again and again:
    no errors (both lock the supporter first), and the records tell the story in order."""
    errors = []
    barrier = threading.Barrier(2)

    def repeat(change):
        try:
            for _ in range(40):
                barrier.wait()
                change()
        except Exception as error:  # reported by the assertion below
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [
        threading.Thread(target=repeat, args=[lambda: withdraw(supporter, [interest])]),
        threading.Thread(
            target=repeat,
            args=[lambda: consent_grant(supporter=supporter, interest=interest, method="staff")],
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # Every change that happened left its record, in order: they alternate.
    actions = list(
        ConsentRecord.objects.filter(supporter=supporter)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert all(first != second for first, second in itertools.pairwise(actions))
