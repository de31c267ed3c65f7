import pytest

from crm.models import AuditEvent, ConsentRecord, Subscription, Supporter, Suppression
from crm.services import (
    ConsentRefused,
    consent_grant,
    supporter_mark_undeliverable,
    supporter_unsubscribe,
    suppression_add,
)
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


def current(supporter, interest):
    return Subscription.objects.get(supporter=supporter, interest=interest).status


def test_grant_subscribes_and_records_consent_with_its_source(interest, partner, staff_member):
    jo = SupporterFactory()
    changed = consent_grant(
        supporter=jo,
        interest=interest,
        method=ConsentRecord.Method.PARTNER_IMPORT,
        lawful_basis="legitimate_interests",
        partner=partner,
        wording="Hear from the coalition",
        wording_version="v3",
        actor=staff_member,
    )
    assert changed is True
    assert current(jo, interest) == Subscription.Status.SUBSCRIBED
    record = ConsentRecord.objects.get(supporter=jo)
    assert (record.action, record.method, record.partner, record.lawful_basis) == (
        "granted",
        "partner_import",
        partner,
        "legitimate_interests",
    )
    assert (record.wording_version, record.actor) == ("v3", staff_member)
    assert AuditEvent.objects.filter(kind="consent_granted", supporter=jo).count() == 1


def test_subscription_state_follows_the_latest_consent_record(supporter, interest):
    supporter_unsubscribe(supporter=supporter, interest=interest, method="email_link")
    assert current(supporter, interest) == Subscription.Status.UNSUBSCRIBED
    consent_grant(supporter=supporter, interest=interest, method="email_link")
    assert current(supporter, interest) == Subscription.Status.SUBSCRIBED
    latest = ConsentRecord.objects.filter(supporter=supporter, interest=interest).first()
    assert latest.action == ConsentRecord.Action.GRANTED
    assert ConsentRecord.objects.filter(supporter=supporter).count() == 3


def test_repeated_unsubscribe_writes_nothing_more(supporter, interest):
    first = supporter_unsubscribe(supporter=supporter, method="one_click")
    second = supporter_unsubscribe(supporter=supporter, method="one_click")
    assert (first, second) == (True, False)
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1


def test_unsubscribe_from_all_stops_every_subscription(supporter, interest, other_interest):
    consent_grant(supporter=supporter, interest=other_interest, method="staff")
    supporter_unsubscribe(supporter=supporter, method="email_link")
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    assert not Subscription.objects.filter(supporter=supporter, status="subscribed").exists()
    assert Supporter.objects.mailable().filter(pk=supporter.pk).exists() is False


def test_consent_records_cannot_be_edited_or_deleted(supporter):
    record = ConsentRecord.objects.filter(supporter=supporter).first()
    record.wording = "something else"
    with pytest.raises(TypeError, match="append-only"):
        record.save()
    with pytest.raises(TypeError, match="append-only"):
        record.delete()
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.filter(supporter=supporter).update(wording="x")
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.filter(supporter=supporter).delete()


def test_suppressed_address_cannot_be_given_consent(interest):
    sam = SupporterFactory(email="sam@example.org")
    suppression_add(email="SAM@example.org ", reason=Suppression.Reason.STAFF)
    with pytest.raises(ConsentRefused, match="cannot be subscribed"):
        consent_grant(supporter=sam, interest=interest, method="staff")
    assert not Subscription.objects.filter(supporter=sam).exists()
    assert Supporter.objects.mailable().filter(pk=sam.pk).exists() is False


def test_complaint_unsubscribes_everything_and_suppresses(supporter):
    supporter_mark_undeliverable(
        supporter=supporter, status=Supporter.Status.COMPLAINED, method="complaint"
    )
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.COMPLAINED
    assert supporter.is_suppressed() is True
    assert ConsentRecord.objects.filter(supporter=supporter, method="complaint").count() == 1
    # A second identical webhook changes nothing.
    assert (
        supporter_mark_undeliverable(
            supporter=supporter, status=Supporter.Status.COMPLAINED, method="complaint"
        )
        is False
    )
    assert Suppression.objects.count() == 1
