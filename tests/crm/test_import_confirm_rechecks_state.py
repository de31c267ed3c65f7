"""The confirm step applies the stored preview only while what it was made from is unchanged.

On PostgreSQL the confirm step computes its check in the database; these
files hold the data most likely to make the two computations disagree
(accents, a tab inside a name, suppressions, topic opt-outs, timestamps).
"""

import datetime

import pytest
from django.utils import timezone

from crm import imports
from crm.imports import ImportFailed
from crm.models import ConsentRecord, ImportBatch, Subscription, Supporter
from crm.services import consent_grant, supporter_unsubscribe, suppression_add
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db

LIST = (
    "Email,First name,Last name,Postcode,Interests\n"
    "new@example.org,Nia,Okafor,E1 6AN,r2p\n"
    "zoe@example.org,Zoë,Brontë,N1 9GU,r2p;events\n"
    "tab@example.org,Tomás,Ó Briain,BT1 1AA,events\n"
    "topic@example.org,Ted,,,events\n"
    "blocked@example.org,Bea,,,r2p\n"
)


@pytest.fixture
def people(interest, other_interest):
    """Zoë (no postcode yet), Tomás (a tab in his surname), Ted (left Events)."""
    zoe = SupporterFactory(
        email="Zoe@Example.org",
        first_name="Zoë",
        last_name="",
        postcode="",
        subscribed_to=[interest],
    )
    tomas = SupporterFactory(
        email="tab@example.org", first_name="Tomás", last_name="Ó\tBriain", postcode="BT1 1AA"
    )
    ted = SupporterFactory(email="topic@example.org", subscribed_to=[interest, other_interest])
    supporter_unsubscribe(supporter=ted, interest=other_interest, method="email_link")
    suppression_add(email="blocked@example.org", reason="complaint")
    return {"zoe": zoe, "tomas": tomas, "ted": ted}


def database_state():
    return (
        sorted(Supporter.objects.values_list("pk", "email", "last_name", "postcode", "status")),
        sorted(Subscription.objects.values_list("supporter_id", "interest_id", "status")),
        ConsentRecord.objects.count(),
    )


def test_an_unchanged_state_lets_the_preview_apply(partner_list, people):
    preview = partner_list(LIST)
    expected = {"new": 1, "updated": 2, "skipped": 2, "subscriptions": 3}
    assert {key: preview.plan.counts[key] for key in expected} == expected
    batch = imports.import_confirm(batch_id=preview.batch.pk)
    assert batch.status == ImportBatch.Status.DONE
    people["zoe"].refresh_from_db()
    assert (people["zoe"].last_name, people["zoe"].postcode) == ("Brontë", "N1 9GU")


def test_a_preview_that_compares_timestamps_applies_when_they_are_unchanged(
    partner_list, people, interest
):
    content = "Email,Last name,Updated\ntab@example.org,O'Brian,2099-01-01\n"
    preview = partner_list(content, interests=[interest], overwrite=True)
    batch = imports.import_confirm(batch_id=preview.batch.pk)
    assert batch.status == ImportBatch.Status.DONE
    assert Supporter.objects.get(pk=people["tomas"].pk).last_name == "O'Brian"


def fill_the_postcode(people, **_):
    Supporter.objects.filter(pk=people["zoe"].pk).update(postcode="N7 8AB")


def rename(people, **_):
    Supporter.objects.filter(pk=people["tomas"].pk).update(last_name="Ó Briain")


def change_address(people, **_):
    Supporter.objects.filter(pk=people["zoe"].pk).update(email="zoe@example.net")


def resubscribe_to_the_topic(people, other_interest, **_):
    consent_grant(
        supporter=people["ted"], interest=other_interest, method="staff", actor_label="test"
    )


def leave_a_topic(people, interest, **_):
    supporter_unsubscribe(supporter=people["zoe"], interest=interest, method="email_link")


def suppress_a_new_address(people, **_):
    suppression_add(email="new@example.org", reason="hard_bounce")


def add_the_new_address(people, **_):
    SupporterFactory(email="NEW@example.org")


@pytest.mark.parametrize(
    "change",
    [
        fill_the_postcode,
        rename,
        change_address,
        resubscribe_to_the_topic,
        leave_a_topic,
        suppress_a_new_address,
        add_the_new_address,
    ],
)
def test_any_change_to_what_the_preview_read_refuses_the_confirm(
    partner_list, people, interest, other_interest, change
):
    """Nothing is written, and staff are told to preview the file again."""
    preview = partner_list(LIST)
    change(people, interest=interest, other_interest=other_interest)
    state = database_state()
    with pytest.raises(ImportFailed, match="changed since the preview"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert database_state() == state
    batch = ImportBatch.objects.get(pk=preview.batch.pk)
    assert (batch.status, batch.file_data, batch.plan_data) == (
        ImportBatch.Status.FAILED,
        None,
        None,
    )


def test_a_newer_change_refuses_a_preview_that_compared_timestamps(partner_list, people, interest):
    content = "Email,Last name,Updated\ntab@example.org,O'Brian,2099-01-01\n"
    preview = partner_list(content, interests=[interest], overwrite=True)
    Supporter.objects.filter(pk=people["tomas"].pk).update(
        updated_at=timezone.now() + datetime.timedelta(seconds=1)
    )
    with pytest.raises(ImportFailed, match="changed since the preview"):
        imports.import_confirm(batch_id=preview.batch.pk)
    assert Supporter.objects.get(pk=people["tomas"].pk).last_name == "Ó\tBriain"


def test_a_preview_with_nobody_to_import_confirms_and_writes_nothing(partner_list, interest):
    """Every row has an error and the valid rows (none) are imported; the check reads nothing."""
    preview = partner_list("Email\nnot-an-email\n", interests=[interest], skip_invalid=True)
    state = database_state()
    batch = imports.import_confirm(batch_id=preview.batch.pk)
    assert (batch.status, batch.counts["error"], batch.counts["created"]) == (
        ImportBatch.Status.DONE,
        1,
        0,
    )
    assert database_state() == state
