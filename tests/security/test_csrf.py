"""Cross-site request forgery: every state-changing page needs the CSRF token.

A browser enforcing nothing (Client(enforce_csrf_checks=True) without the
token) is refused with 403 and changes nothing, on every admin page and on
the supporters' pages. Three endpoints are deliberately exempt:

- /unsubscribe/<token>/: RFC 8058 one-click unsubscribe, which mailbox
  providers POST with no cookies; the signed token is the authority.
- /join/: the sign-up form embedded in the charity's own site, where a
  cross-site frame gets no cookies (docs/self-service.md). Posting it stores
  nothing and only emails a confirmation link; the confirmation page itself
  needs the token.
- /anymail/…: ESP webhooks, authenticated by the webhook secret instead.
"""

import json
import re

import pytest
from django.core import mail
from django.test import Client

from crm.models import ConsentRecord, Subscription, Supporter
from mailings import tokens
from tests.security.conftest import WEBHOOK_AUTH, changed_tables, database_state
from tests.security.test_admin_permissions import (  # noqa: F401 (world is a fixture)
    PAYLOADS,
    SUPERUSER,
    admin_pages,
    world,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _inline_notices(settings, fresh_cache, tasks_run_now):
    """Notices are sent inline, so any email a request queued shows in mail.outbox."""
    settings.RALLY_RATE_LIMIT_PER_IP = "1000/h"


def strict_client(user=None):
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


def csrf_token_from(response):
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_every_admin_post_without_the_token_is_refused(world):  # noqa: F811
    """Even a superuser's browser cannot be made to POST to any admin page cross-site."""
    client = strict_client(world["users"][SUPERUSER])
    before = database_state()
    wrong = []
    tried = 0
    for _label, name, url, _get, post_roles in admin_pages(world):
        if post_roles is None:
            continue
        kind = name.rsplit("_", 1)[-1]
        payload = PAYLOADS.get(name.split(":")[0]) or PAYLOADS.get(kind) or (lambda world: {})
        response = client.post(url, payload(world))
        tried += 1
        if response.status_code != 403:
            wrong.append(f"{name} -> {response.status_code}")
    # Bulk actions go through the changelist's POST.
    for url in ("/admin/crm/supporter/", "/admin/mailings/mailing/"):
        response = client.post(
            url, {"action": "delete_selected", "_selected_action": ["1"], "post": "yes"}
        )
        tried += 1
        if response.status_code != 403:
            wrong.append(f"{url} action -> {response.status_code}")

    assert tried > 50
    assert wrong == []
    assert changed_tables(before, database_state()) == []
    assert mail.outbox == []


def test_admin_post_with_the_token_from_the_page_works(world):  # noqa: F811
    """The refusals above are CSRF's doing: with the page's token the same POST works."""
    client = strict_client(world["users"][SUPERUSER])
    alice = world["supporter"]
    url = f"/admin/crm/supporter/{alice.pk}/revoke-links/"
    token = csrf_token_from(client.get(f"/admin/crm/supporter/{alice.pk}/change/"))

    response = client.post(url, {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.link_version == 2


def test_admin_login_without_the_token_is_refused(superuser):
    response = strict_client().post("/admin/login/", {"username": "root", "password": "pw"})

    assert response.status_code == 403
    assert "_auth_user_id" not in strict_client().session


def supporter_pages(supporter, newsletter):
    preferences = tokens.make_preferences_token(supporter)
    return {
        "preference centre": (
            f"/preferences/{preferences}/",
            {"first_name": "Mallory", "interests": ["events"]},
        ),
        "unsubscribe from all": (f"/preferences/{preferences}/unsubscribe-all/", {}),
        "undo unsubscribe": (f"/preferences/{preferences}/resubscribe/", {"interest": ["1"]}),
        "email my data": (f"/preferences/{preferences}/my-data/", {}),
        "download my data": (f"/my-data/{tokens.make_data_download_token(supporter)}/", {}),
        "email me my link": ("/preferences/", {"email": supporter.email}),
        "confirm sign-up": (
            "/join/confirm/"
            + tokens.make_signup_token(
                tokens.PendingSignup(
                    email="new@example.org",
                    first_name="New",
                    interest_ids=(newsletter.interests.first().pk,),
                )
            )
            + "/",
            {},
        ),
    }


@pytest.mark.parametrize(
    "page",
    [
        "preference centre",
        "unsubscribe from all",
        "undo unsubscribe",
        "email my data",
        "download my data",
        "email me my link",
        "confirm sign-up",
    ],
)
def test_supporter_page_post_without_the_token_is_refused(
    supporter, other_interest, newsletter, page
):
    url, data = supporter_pages(supporter, newsletter)[page]
    before = database_state()

    response = strict_client().post(url, data)

    assert response.status_code == 403
    assert changed_tables(before, database_state()) == []
    assert mail.outbox == []


@pytest.mark.parametrize("page", ["preference centre", "unsubscribe from all", "confirm sign-up"])
def test_supporter_page_post_with_the_token_from_its_form_works(
    supporter, other_interest, newsletter, page
):
    url, data = supporter_pages(supporter, newsletter)[page]
    client = strict_client()
    before = database_state()

    response = client.post(url, {**data, "csrfmiddlewaretoken": csrf_token_from(client.get(url))})

    assert response.status_code == 200
    assert changed_tables(before, database_state()) != []


def test_one_click_unsubscribe_works_without_a_token_or_cookie(supporter, newsletter):
    """RFC 8058: the mailbox provider POSTs List-Unsubscribe=One-Click and nothing else."""
    url = f"/unsubscribe/{tokens.make_unsubscribe_token(supporter, newsletter)}/"

    response = strict_client().post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    assert not supporter.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).exists()
    assert ConsentRecord.objects.filter(supporter=supporter, method="one_click").exists()


def test_signup_form_is_exempt_but_changes_nothing_until_the_emailed_link_is_confirmed(
    interest,
):
    """/join/ takes a cross-site POST (it is embedded in the charity's site), stores
    nothing and only emails a confirmation link; confirming needs the link and a token."""
    before = database_state()
    client = strict_client()

    response = client.post(
        "/join/", {"email": "forged@example.org", "first_name": "Forged", "interests": ["r2p"]}
    )

    assert response.status_code == 200
    assert changed_tables(before, database_state()) == []
    assert not Supporter.objects.with_email("forged@example.org").exists()
    assert [message.to for message in mail.outbox] == [["forged@example.org"]]
    link = re.search(r"https?://\S+/join/confirm/([^/\s]+)/", mail.outbox[0].body).group(0)
    path = link.split("rally.example.org", 1)[1]

    # The link's page only asks; posting it cross-site is refused.
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 403
    assert changed_tables(before, database_state()) == []

    # The person who owns the inbox presses the button.
    confirmed = client.post(path, {"csrfmiddlewaretoken": csrf_token_from(client.get(path))})
    assert confirmed.status_code == 200
    assert Supporter.objects.with_email("forged@example.org").exists()


def test_webhooks_are_exempt_and_authenticated_by_their_secret_instead(webhook_settings):
    client = strict_client()
    body = json.dumps({"RecordType": "Delivery", "MessageID": "x", "Metadata": {}})

    with_secret = client.post(
        "/anymail/postmark/tracking/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=WEBHOOK_AUTH,
    )
    without = client.post("/anymail/postmark/tracking/", body, content_type="application/json")

    assert (with_secret.status_code, without.status_code) == (200, 401)
