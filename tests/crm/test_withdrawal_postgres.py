"""On PostgreSQL, withdrawing from topics is one statement: it must write what the ORM does."""

import functools
import itertools
import threading

import pytest
from django.db import connection, transaction

from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter
from crm.services import consent_grant, supporter_unsubscribe, supporter_unsubscribe_from_mailing
from tests.factories import CampaignInterestFactory, SupporterFactory

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


def test_leaving_a_mailings_topics_in_one_statement_writes_what_the_orm_writes(
    interest, other_interest, r2p_mailing, monkeypatch
):
    """One-click: the mailing's interests are found and left in the same statement."""
    unrelated = CampaignInterestFactory(slug="un", name="UK at the UN")
    r2p_mailing.interests.add(other_interest)
    people = SupporterFactory.create_batch(2)
    for person in people:
        for topic in (interest, other_interest, unrelated):
            consent_grant(supporter=person, interest=topic, method="staff")
        # Already left one of the mailing's topics: nothing is written for it again.
        withdraw(person, [other_interest])

    def leave(person):
        return supporter_unsubscribe_from_mailing(
            supporter=person,
            mailing=r2p_mailing,
            method=ConsentRecord.Method.ONE_CLICK,
            actor_label="One-click unsubscribe",
        )

    one_statement = leave(people[0])
    with monkeypatch.context() as patched:
        patched.setattr(connection, "vendor", "another database")
        orm = leave(people[1])

    # Both answer with the mailing's topics, in the order pages list them.
    assert [topic.slug for topic in one_statement] == [topic.slug for topic in orm]
    assert {topic.slug for topic in one_statement} == {interest.slug, other_interest.slug}
    assert written(people[0]) == written(people[1])
    records, events, subscriptions = written(people[0])
    assert [(r["interest_id"], r["mailing_id"]) for r in records if r["mailing_id"]] == [
        (interest.pk, r2p_mailing.pk)
    ]
    assert [e["detail"] for e in events if e["detail"]["mailing"]] == [
        {"interest": interest.slug, "method": "one_click", "mailing": r2p_mailing.pk}
    ]
    assert dict(subscriptions) == {
        interest.slug: "unsubscribed",
        other_interest.slug: "unsubscribed",
        unrelated.slug: "subscribed",
    }


@pytest.mark.django_db(transaction=True)
def test_a_repeated_one_click_does_not_wait_for_a_change_in_progress(supporter, r2p_mailing):
    """Providers retry: a repeat that has nothing to end takes no lock, so it never
    queues behind staff editing the same supporter."""
    leave = functools.partial(
        supporter_unsubscribe_from_mailing,
        supporter=supporter,
        mailing=r2p_mailing,
        method=ConsentRecord.Method.ONE_CLICK,
    )
    consent_grant(supporter=supporter, interest=r2p_mailing.interests.get(), method="staff")
    assert [topic.withdrawn for topic in leave()] == [True]
    locked, release = threading.Event(), threading.Event()

    def hold_the_supporter():
        with transaction.atomic():
            Supporter.objects.select_for_update().get(pk=supporter.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_supporter)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            assert [topic.withdrawn for topic in leave()] == [False]
    finally:
        release.set()
        holder.join()
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1


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
