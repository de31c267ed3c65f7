"""Unsubscribe from all email with a confirmation, and undo it with new consent."""

import pytest

from crm.models import ConsentRecord, Subscription, Supporter
from mailings import tokens

pytestmark = pytest.mark.django_db


def url(supporter, suffix=""):
    return f"/preferences/{tokens.make_preferences_token(supporter)}/{suffix}"


def test_get_asks_for_confirmation_and_changes_nothing(client, supporter):
    response = client.get(url(supporter, "unsubscribe-all/"))
    assert response.status_code == 200
    assert "Yes, unsubscribe me from all email" in response.content.decode()
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.ACTIVE


def test_post_unsubscribes_from_everything_and_offers_undo(client, supporter, interest):
    response = client.post(url(supporter, "unsubscribe-all/"))

    html = response.content.decode()
    assert "You're unsubscribed from all email" in html
    assert "Undo: subscribe me again" in html
    assert f'name="interest" value="{interest.pk}"' in html
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    assert not supporter.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).exists()
    record = ConsentRecord.objects.filter(supporter=supporter).first()
    assert (record.action, record.interest, record.method) == (
        ConsentRecord.Action.WITHDRAWN,
        None,
        ConsentRecord.Method.EMAIL_LINK,
    )
    assert Supporter.objects.mailable().filter(pk=supporter.pk).exists() is False


def test_undo_resubscribes_with_new_consent(client, supporter, interest):
    client.post(url(supporter, "unsubscribe-all/"))
    before = ConsentRecord.objects.filter(supporter=supporter).count()

    response = client.post(url(supporter, "resubscribe/"), {"interest": [interest.pk]})

    assert "Welcome back" in response.content.decode()
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.ACTIVE
    assert supporter.subscriptions.get(interest=interest).status == "subscribed"
    new = ConsentRecord.objects.filter(supporter=supporter)[:2]
    assert ConsentRecord.objects.filter(supporter=supporter).count() == before + 2
    assert {(r.action, r.method) for r in new} == {
        (ConsentRecord.Action.GRANTED, ConsentRecord.Method.EMAIL_LINK)
    }
    assert Supporter.objects.mailable().interested_in(interest).filter(pk=supporter.pk).exists()


def test_undo_only_restores_topics_the_supporter_had(client, supporter, interest, other_interest):
    client.post(url(supporter, "unsubscribe-all/"))
    client.post(url(supporter, "resubscribe/"), {"interest": [interest.pk, other_interest.pk, "x"]})
    assert not supporter.subscriptions.filter(interest=other_interest).exists()


def test_undo_cannot_resubscribe_a_suppressed_address(client, supporter):
    from crm.services import suppression_add

    client.post(url(supporter, "unsubscribe-all/"))
    suppression_add(email=supporter.email, reason="hard_bounce")
    response = client.post(url(supporter, "resubscribe/"), {"interest": ["1"]})
    assert "could not subscribe you again" in response.content.decode()
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED


def test_repeating_unsubscribe_all_writes_one_record(client, supporter):
    client.post(url(supporter, "unsubscribe-all/"))
    client.post(url(supporter, "unsubscribe-all/"))
    assert (
        ConsentRecord.objects.filter(
            supporter=supporter, interest=None, action=ConsentRecord.Action.WITHDRAWN
        ).count()
        == 1
    )


def test_resubscribe_refuses_get(client, supporter):
    assert client.get(url(supporter, "resubscribe/")).status_code == 405
