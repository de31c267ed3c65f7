"""The import state check: crm.sql's statements find and sum up what the ORM twins do.

crm.imports.state._matching filters with crm.sql.match_any on PostgreSQL and
with ORM lookups elsewhere; the confirm step fingerprints the state with
crm.sql.import_state_fingerprint (_sql_fingerprint) on PostgreSQL and with
_look_up(...).fingerprint() elsewhere, while the preview always takes the
latter. The same data must give the same rows and the same fingerprint.
"""

import threading

import pytest
from django.db import OperationalError, connection, transaction

from crm import sql
from crm.imports import state
from crm.models import Subscription, Supporter, Suppression, email_hash
from crm.services import consent_grant, supporter_unsubscribe, suppression_add
from tests.factories import SupporterFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

# The file's addresses, as the plan keeps them (normalised).
KEYS = [
    "zoe@example.org",
    "tab@example.org",
    "topic@example.org",
    "blocked@example.org",
    "o'brien+news@example.org",
    "nobody@example.org",
]


@pytest.fixture
def people(interest, other_interest):
    """The data most likely to make the two computations disagree.

    Zoë (accents, an address in mixed case), Tomás (a tab in his surname),
    Ted (left Events), Bea (suppressed), Orla (a quote and a plus in her
    address), and Una, whom the file does not name.
    """
    zoe = SupporterFactory(
        email="Zoe@Example.org",
        first_name="Zoë",
        last_name="",
        postcode="",
        subscribed_to=[interest],
    )
    tomas = SupporterFactory(email="tab@example.org", first_name="Tomás", last_name="Ó\tBriain")
    ted = SupporterFactory(email="topic@example.org", subscribed_to=[interest, other_interest])
    supporter_unsubscribe(supporter=ted, interest=other_interest, method="email_link")
    bea = SupporterFactory(email="blocked@example.org", subscribed_to=[other_interest])
    suppression_add(email="blocked@example.org", reason="complaint")
    suppression_add(email="nobody@example.org", reason="hard_bounce")
    orla = SupporterFactory(email="O'Brien+news@example.org", phone="+44 20 7946 0000")
    una = SupporterFactory(email="una@example.org", subscribed_to=[interest])
    suppression_add(email="una@example.org", reason="erasure")
    return {"zoe": zoe, "tomas": tomas, "ted": ted, "bea": bea, "orla": orla, "una": una}


def hashes(keys):
    return [email_hash(key) for key in keys]


def matched(queryset, column, values, monkeypatch, *, statement):
    with monkeypatch.context() as patched:
        if not statement:
            patched.setattr(sql, "in_use", lambda: False)
        assert sql.in_use() is statement
        return sorted(state._matching(queryset, column, values).values_list("pk", flat=True))


def everyone_but_una(people):
    return sorted(person.pk for name, person in people.items() if name != "una")


@pytest.mark.parametrize(
    ("model", "column", "values", "expected"),
    [
        (Supporter, "LOWER(email)", lambda people: KEYS, everyone_but_una),
        (
            Supporter,
            "id",
            lambda people: [people["zoe"].pk, people["orla"].pk, 10**12],
            lambda people: sorted([people["zoe"].pk, people["orla"].pk]),
        ),
        (
            Suppression,
            "email_hash",
            lambda people: hashes(KEYS),
            lambda people: sorted(
                Suppression.objects.exclude(reason="erasure").values_list("pk", flat=True)
            ),
        ),
        (
            Subscription,
            "supporter_id",
            lambda people: [people["ted"].pk, people["una"].pk],
            lambda people: sorted(
                Subscription.objects.filter(
                    supporter__in=[people["ted"], people["una"]]
                ).values_list("pk", flat=True)
            ),
        ),
        (Supporter, "LOWER(email)", lambda people: [], lambda people: []),
    ],
    ids=["addresses", "ids", "hashes", "subscribers", "nothing"],
)
def test_match_any_finds_the_rows_the_orm_lookup_finds(
    people, monkeypatch, model, column, values, expected
):
    values = values(people)
    everything = model.objects.all()

    statement = matched(everything, column, values, monkeypatch, statement=True)
    orm = matched(everything, column, values, monkeypatch, statement=False)

    assert statement == orm == expected(people)


def fingerprints(keys, *, with_updated, monkeypatch):
    """The confirm step's fingerprint on PostgreSQL, and the preview's with each way of matching."""
    found = {"statement": state._sql_fingerprint(keys, hashes(keys), with_updated=with_updated)}
    for statement in (True, False):
        with monkeypatch.context() as patched:
            if not statement:
                patched.setattr(sql, "in_use", lambda: False)
            assert sql.in_use() is statement
            looked_up = state._look_up(keys, hashes(keys), with_updated=with_updated, lock=True)
        found["python, " + ("match_any" if statement else "ORM lookups")] = looked_up.fingerprint()
    return found


@pytest.mark.parametrize("with_updated", [False, True], ids=["filling", "replacing"])
def test_the_database_fingerprints_the_state_as_python_does(people, monkeypatch, with_updated):
    found = fingerprints(KEYS, with_updated=with_updated, monkeypatch=monkeypatch)
    assert len(set(found.values())) == 1, found


@pytest.mark.parametrize("with_updated", [False, True], ids=["filling", "replacing"])
def test_a_change_since_the_preview_changes_both_fingerprints_alike(
    people, monkeypatch, other_interest, with_updated
):
    """Each kind of change the confirm step must notice moves both fingerprints, together."""
    seen = set()
    changes = [
        lambda: consent_grant(supporter=people["zoe"], interest=other_interest, method="staff"),
        lambda: supporter_unsubscribe(supporter=people["zoe"], method="email_link"),
        lambda: Supporter.objects.filter(pk=people["tomas"].pk).update(postcode="BT2 2AA"),
        lambda: suppression_add(email="o'brien+news@example.org", reason="complaint"),
        lambda: SupporterFactory(email="Nobody@example.org"),
    ]
    for change in [lambda: None, *changes]:
        change()
        found = fingerprints(KEYS, with_updated=with_updated, monkeypatch=monkeypatch)
        assert len(set(found.values())) == 1, found
        seen.add(found["statement"])
    assert len(seen) == 1 + len(changes)


def test_an_empty_file_fingerprints_alike(db, monkeypatch):
    found = fingerprints([], with_updated=False, monkeypatch=monkeypatch)
    assert len(set(found.values())) == 1, found


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", [True, False], ids=["statement", "orm"])
def test_the_check_locks_the_supporters_the_file_names(monkeypatch, statement):
    """Until the import commits, nobody else can change a supporter the file names."""
    named = SupporterFactory(email="named@example.org")
    other = SupporterFactory(email="other@example.org")
    locked = {}

    def try_to_lock(supporter):
        try:
            with transaction.atomic():
                Supporter.objects.select_for_update(nowait=True).get(pk=supporter.pk)
            locked[supporter.email] = False
        except OperationalError:
            locked[supporter.email] = True
        finally:
            connection.close()

    keys = ["named@example.org"]
    with monkeypatch.context() as patched, transaction.atomic():
        if not statement:
            patched.setattr(sql, "in_use", lambda: False)
        if sql.in_use():
            state._sql_fingerprint(keys, hashes(keys), with_updated=False)
        else:
            state._look_up(keys, hashes(keys), lock=True)
        for supporter in (named, other):
            thread = threading.Thread(target=try_to_lock, args=[supporter])
            thread.start()
            thread.join()

    assert locked == {"named@example.org": True, "other@example.org": False}
