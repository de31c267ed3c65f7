"""On PostgreSQL, withdrawing from topics is one statement: concurrent changes stay correct.

tests/sql/test_withdrawal_twins.py checks that it writes what the ORM does.
"""

import functools
import itertools
import threading

import pytest
from django.db import connection, transaction

from crm.models import ConsentRecord, Supporter
from crm.services import consent_grant, supporter_unsubscribe, supporter_unsubscribe_from_mailing

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def withdraw(supporter, topics):
    return supporter_unsubscribe(
        supporter=supporter,
        interests=topics,
        method=ConsentRecord.Method.ONE_CLICK,
        actor_label="One-click unsubscribe",
    )


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
