"""A newsletter as sent: its raw MIME carries RFC 8058 headers whose URL works with a POST."""

import email
import email.policy
import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from crm.models import ConsentRecord, Supporter
from mailings import reports, services
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(tasks_run_now, campaign_user, django_capture_on_commit_callbacks):
    """Send `mailing` through the sending engine; return each message's raw MIME, parsed."""

    def send(mailing):
        with django_capture_on_commit_callbacks(execute=True):
            services.mailing_send_now(mailing=mailing, actor=campaign_user)
        return [
            email.message_from_bytes(m.message().as_bytes(), policy=email.policy.default)
            for m in mail.outbox
        ]

    return send


def one_click_path(parsed):
    header = str(parsed["List-Unsubscribe"])
    url = re.match(r"\s*<(https://[^>]+)>", header).group(1)
    assert urlsplit(url).netloc == "rally.example.org"
    return urlsplit(url).path


def visible_link(parsed):
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    return urlsplit(re.search(r"https://rally\.example\.org/\S+/", text).group(0)).path


def test_one_click_header_unsubscribes_with_a_bare_post(sent, newsletter, supporter, interest):
    [parsed] = sent(newsletter)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    response = Client(enforce_csrf_checks=True).post(
        one_click_path(parsed),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert supporter.subscriptions.get(interest=interest).status == "unsubscribed"
    record = ConsentRecord.objects.get(supporter=supporter, action="withdrawn")
    assert (record.method, record.mailing, record.interest) == ("one_click", newsletter, interest)
    assert reports.report(newsletter)["figures"]["unsubscribed"] == 1


def test_visible_link_in_the_body_asks_before_unsubscribing(sent, newsletter, supporter, interest):
    [parsed] = sent(newsletter)
    link = visible_link(parsed)
    assert link == one_click_path(parsed)

    page = Client().get(link)

    assert page.status_code == 200
    assert "Unsubscribe" in page.content.decode()
    assert supporter.subscriptions.get(interest=interest).status == "subscribed"


def test_mailing_sent_for_no_interest(sent, supporter, campaign_user):
    """Its visible link is the preference centre; the one-click POST stops all email."""
    segment = factories.SegmentFactory(kind="static")
    segment.members.add(supporter)
    mailing = factories.MailingFactory(name="Appeal to a segment")
    mailing.include_segments.set([segment])

    [parsed] = sent(mailing)

    assert Client().get(visible_link(parsed)).status_code == 200
    assert visible_link(parsed).startswith("/preferences/")
    response = Client().post(one_click_path(parsed), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    supporter.refresh_from_db()
    assert supporter.status == Supporter.Status.UNSUBSCRIBED
    record = ConsentRecord.objects.get(supporter=supporter, action="withdrawn")
    assert (record.interest, record.mailing) == (None, mailing)
