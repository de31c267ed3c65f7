"""RFC 8058 one-click unsubscribe: POST leaves at once, GET only asks."""

import threading

import pytest
from django.db import connection
from django.test import Client

from crm.models import ConsentRecord, Subscription, Supporter
from mailings import tokens
from mailings.models import Mailing

pytestmark = pytest.mark.django_db

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def bare_client():
    """A mailbox provider: no cookies, no CSRF token, no login."""
    return Client(enforce_csrf_checks=True)


def url(supporter, mailing=None):
    return f"/unsubscribe/{tokens.make_unsubscribe_token(supporter, mailing)}/"


def status(supporter, interest):
    return Subscription.objects.get(supporter=supporter, interest=interest).status


def test_post_unsubscribes_from_the_mailings_interests_at_once(
    bare_client, supporter, interest, other_interest, r2p_mailing
):
    from crm.services import consent_grant

    consent_grant(supporter=supporter, interest=other_interest, method="staff")

    response = bare_client.post(url(supporter, r2p_mailing), ONE_CLICK)

    assert response.status_code == 200
    assert not response.cookies
    assert status(supporter, interest) == "unsubscribed"
    assert status(supporter, other_interest) == "subscribed"
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.ACTIVE


def test_unsubscribe_is_recorded_against_the_mailing(bare_client, supporter, interest, r2p_mailing):
    bare_client.post(url(supporter, r2p_mailing), ONE_CLICK)

    record = ConsentRecord.objects.get(supporter=supporter, action="withdrawn")
    assert record.interest == interest
    assert record.method == ConsentRecord.Method.ONE_CLICK
    assert record.mailing == r2p_mailing
    assert r2p_mailing.consent_records.filter(action="withdrawn").count() == 1


def test_post_is_idempotent(bare_client, supporter, r2p_mailing):
    first = bare_client.post(url(supporter, r2p_mailing), ONE_CLICK)
    second = bare_client.post(url(supporter, r2p_mailing), ONE_CLICK)
    assert first.status_code == second.status_code == 200
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1


def test_multipart_post_works_too(bare_client, supporter, interest, r2p_mailing):
    """Some providers send the RFC 8058 body as multipart/form-data."""
    from django.test.client import MULTIPART_CONTENT

    response = bare_client.post(url(supporter, r2p_mailing), ONE_CLICK, MULTIPART_CONTENT)
    assert response.status_code == 200
    assert status(supporter, interest) == "unsubscribed"


def test_get_changes_nothing_and_offers_a_button(bare_client, supporter, interest, r2p_mailing):
    for _ in range(3):  # link scanners prefetch, sometimes repeatedly
        response = bare_client.get(url(supporter, r2p_mailing))
    bare_client.head(url(supporter, r2p_mailing))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<form method="post"' in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert "Responsibility to Protect" in html
    assert f'href="/preferences/{tokens.make_preferences_token(supporter)}/"' in html
    assert status(supporter, interest) == "subscribed"
    assert not ConsentRecord.objects.filter(action="withdrawn").exists()


def test_page_after_unsubscribing_offers_everything(bare_client, supporter, r2p_mailing):
    response = bare_client.post(url(supporter, r2p_mailing), ONE_CLICK)
    html = response.content.decode()
    assert "You're unsubscribed from Responsibility to Protect" in html
    assert 'name="scope" value="all"' in html

    bare_client.post(url(supporter, r2p_mailing), {"scope": "all"})

    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    everything = ConsentRecord.objects.get(supporter=supporter, interest=None)
    assert everything.mailing == r2p_mailing


def test_mailing_without_interests_leads_to_the_preference_centre(bare_client, supporter):
    mailing = Mailing.objects.create(name="Segment-only appeal", subject="An appeal")

    response = bare_client.get(url(supporter, mailing))

    assert response.status_code == 302
    assert response["Location"] == f"/preferences/{tokens.make_preferences_token(supporter)}/"


def test_one_click_post_for_a_mailing_without_interests_stops_all_email(bare_client, supporter):
    mailing = Mailing.objects.create(name="Segment-only appeal", subject="An appeal")

    response = bare_client.post(url(supporter, mailing), ONE_CLICK)

    assert response.status_code == 200
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    record = ConsentRecord.objects.get(supporter=supporter, action="withdrawn")
    assert (record.interest, record.mailing, record.method) == (None, mailing, "one_click")


def test_tampered_token_is_refused_without_error(bare_client, supporter, r2p_mailing):
    token = tokens.make_unsubscribe_token(supporter, r2p_mailing)
    response = bare_client.post(f"/unsubscribe/{token[:-2]}xx/", ONE_CLICK)
    assert response.status_code == 404
    assert "This link no longer works" in response.content.decode()
    assert not ConsentRecord.objects.filter(action="withdrawn").exists()


def test_other_methods_are_refused(bare_client, supporter, r2p_mailing):
    assert bare_client.put(url(supporter, r2p_mailing)).status_code == 405
    assert bare_client.delete(url(supporter, r2p_mailing)).status_code == 405


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_unsubscribe_once(supporter, interest, r2p_mailing):
    """Providers and people can click at the same moment: one record, no errors."""
    target = url(supporter, r2p_mailing)
    codes = []
    barrier = threading.Barrier(6)

    def click():
        barrier.wait()
        codes.append(Client().post(target, ONE_CLICK).status_code)
        connection.close()

    threads = [threading.Thread(target=click) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert codes == [200] * 6
    assert ConsentRecord.objects.filter(supporter=supporter, action="withdrawn").count() == 1
    assert status(supporter, interest) == "unsubscribed"
