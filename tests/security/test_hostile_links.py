"""Junk in supporters' links and in the public forms.

Every public page that takes a token (/preferences/<token>/ and its
sub-pages, /unsubscribe/<token>/, /join/confirm/<token>/, /my-data/<token>/)
answers any string, whether random unicode, percent-encoded slashes, a real
token with one character changed, or 10,000 characters long, with the
friendly "link no longer works" page or a plain 404/405: never a 500, never a
write, never an email. The forms behind valid links take hostile field
values without a crash, and either save all of a change or none of it.
"""

import string
from urllib.parse import quote

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils.datastructures import MultiValueDict
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from crm.models import ConsentRecord, Subscription, Supporter
from mailings import tokens
from mailings.forms import PreferencesForm
from tests.security.conftest import changed_tables, database_state

pytestmark = pytest.mark.django_db

FIXTURES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# One client for the module: a new Client loads the middleware (and WhiteNoise
# rescans the static files) each time.
CLIENT = Client()

# Each page behind a token, the methods it answers, and what a valid token does.
TOKEN_PAGES = [
    "/preferences/{}/",
    "/preferences/{}/unsubscribe-all/",
    "/preferences/{}/resubscribe/",
    "/preferences/{}/my-data/",
    "/my-data/{}/",
    "/unsubscribe/{}/",
    "/join/confirm/{}/",
]
# Friendly page (404), no such URL (404), POST-only page (405), or a page that
# accepts it but changed nothing; never 500.
HARMLESS = {404, 405}

# Text that can go in a URL: any character but lone surrogates, which have no UTF-8.
url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
token_like = st.text(string.ascii_letters + string.digits + ":-_=.%/", max_size=400)


@pytest.fixture(autouse=True)
def _quiet_limits(settings, fresh_cache, tasks_run_now):
    """Generous rate limits (so junk is never just throttled), notices sent inline."""
    settings.RALLY_RATE_LIMIT_PER_IP = "100000/h"
    settings.RALLY_RATE_LIMIT_PER_ADDRESS = "100000/h"


@pytest.fixture
def real_tokens(supporter, newsletter):
    """One valid token of every kind, for Alice."""
    return [
        tokens.make_preferences_token(supporter),
        tokens.make_unsubscribe_token(supporter, newsletter),
        tokens.make_data_download_token(supporter),
        tokens.make_signup_token(tokens.PendingSignup(email="new@example.org")),
    ]


def _in_rolled_back_transaction(check):
    with transaction.atomic():
        check()
        transaction.set_rollback(True)


def assert_junk_is_harmless(token, *, encode=True):
    """GET and POST every token page with `token`: a harmless answer, no write, no email."""
    before = database_state()
    sent = len(mail.outbox)
    segment = quote(token, safe="") if encode else token
    for page in TOKEN_PAGES:
        url = page.format(segment)
        for method in (CLIENT.get, CLIENT.head, CLIENT.post):
            response = method(
                url, {"List-Unsubscribe": "One-Click"} if method is CLIENT.post else {}
            )
            assert response.status_code in HARMLESS, (url, method.__name__, response.status_code)
    assert changed_tables(before, database_state()) == []
    assert len(mail.outbox) == sent


@FIXTURES
@given(junk=url_text)
def test_random_unicode_tokens_are_refused_harmlessly(supporter, junk):
    _in_rolled_back_transaction(lambda: assert_junk_is_harmless(junk))


@FIXTURES
@given(junk=token_like)
def test_token_shaped_junk_unencoded_is_refused_harmlessly(supporter, junk):
    """Slashes, dots and percent signs straight into the path, as a crawler might send them."""
    assume(junk not in ("", ".", ".."))
    _in_rolled_back_transaction(lambda: assert_junk_is_harmless(junk, encode=False))


@FIXTURES
@given(data=st.data())
def test_real_tokens_with_one_change_are_refused_harmlessly(real_tokens, data):
    """Each kind of token, truncated, extended or with one character replaced."""
    token = data.draw(st.sampled_from(real_tokens))
    position = data.draw(st.integers(0, len(token)))
    change = data.draw(
        st.sampled_from(["truncate", "insert", "replace", "swap-purpose"]), label="change"
    )
    if change == "truncate":
        mutated = token[:position]
    elif change == "insert":
        mutated = token[:position] + data.draw(url_text.filter(bool)) + token[position:]
    elif change == "replace":
        assume(position < len(token))
        new = data.draw(st.characters(exclude_categories=["Cs"]))
        mutated = token[:position] + new + token[position + 1 :]
    else:
        mutated = token  # a valid token, but sent to the pages of other purposes
    assume(mutated != token or change == "swap-purpose")
    if change == "swap-purpose":
        # A token is only good for its own purpose; the other pages refuse it.
        own = {
            real_tokens[0]: ("/preferences/",),
            real_tokens[1]: ("/unsubscribe/", "/preferences/"),
            real_tokens[2]: ("/my-data/",),
            real_tokens[3]: ("/join/confirm/",),
        }[token]
        for page in TOKEN_PAGES:
            if page.startswith(own):
                continue
            response = CLIENT.get(page.format(quote(token, safe="")))
            assert response.status_code in HARMLESS
        return
    _in_rolled_back_transaction(lambda: assert_junk_is_harmless(mutated))


@pytest.mark.parametrize("extra", [":", "!", "~", "\n", "%3A"])
def test_sealed_token_with_a_character_added_is_refused(interest, extra):
    """Base64 decoding skips characters outside its alphabet; the link must not."""
    token = tokens.make_signup_token(
        tokens.PendingSignup(email="new@example.org", interest_ids=(interest.pk,))
    )
    assert tokens.read_signup_token(token) is not None

    assert tokens.read_signup_token(extra + token) is None
    assert tokens.read_signup_token(token[:10] + extra + token[10:]) is None
    assert tokens.read_link_request_token(extra + tokens.make_link_request_token("a@b.org")) is None
    assert_junk_is_harmless(extra + token)


@pytest.mark.parametrize("length", [1_000, 10_000, 100_000])
def test_very_long_tokens_are_refused_harmlessly(supporter, length):
    assert_junk_is_harmless("A" * length)
    assert_junk_is_harmless(tokens.make_preferences_token(supporter) + "x" * length)


@pytest.mark.parametrize(
    "junk",
    [
        "..%2F..%2Fadmin",
        "%2F",
        "%00",
        "%ff%fe",
        "../../etc/passwd",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "eyJzIjoxLCJ2IjoxfQ:1abc:forged",
        "\u202e\u200b\ufeff",
        "🙂" * 50,
    ],
)
def test_known_nasties_are_refused_harmlessly(supporter, junk):
    assert_junk_is_harmless(junk)
    assert_junk_is_harmless(junk, encode=False)


def test_friendly_page_does_not_echo_the_junk(supporter):
    """The bad-link page shows no part of what was sent (no reflected markup)."""
    response = CLIENT.get("/preferences/" + quote("<b>zzqx</b>", safe="") + "/")

    assert response.status_code == 404
    assert "zzqx" not in response.content.decode()


# Hostile values in the forms behind valid links -------------------------------------


field_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=120),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=101, max_size=5000),
    st.sampled_from(['=HYPERLINK("http://x")', "+1", "@SUM(A1)", "a\x00b", "\r\n", " "]),
)
interest_values = st.lists(
    st.one_of(st.just("r2p"), st.just("events"), st.text(max_size=30), st.integers().map(str)),
    max_size=4,
)


@FIXTURES
@given(first=field_text, last=field_text, postcode=field_text, interests=interest_values)
def test_preference_form_with_hostile_values_saves_all_or_nothing(
    supporter, other_interest, first, last, postcode, interests
):
    token = tokens.make_preferences_token(supporter)

    def check():
        before = database_state()
        records = ConsentRecord.objects.count()
        data = {"first_name": [first], "last_name": [last], "postcode": [postcode]}
        data["interests"] = interests
        response = CLIENT.post(f"/preferences/{token}/", data)
        assert response.status_code == 200
        form = PreferencesForm(MultiValueDict(data))
        if not form.is_valid():
            # Refused with the errors shown: nothing saved.
            assert b"There is a problem" in response.content
            assert changed_tables(before, database_state()) == []
            return
        assert b"There is a problem" not in response.content
        alice = Supporter.objects.get(pk=supporter.pk)
        assert alice.first_name == form.cleaned_data["first_name"]
        assert alice.postcode == form.cleaned_data["postcode"]
        subscribed = set(
            Subscription.objects.filter(supporter=alice, status="subscribed").values_list(
                "interest__slug", flat=True
            )
        )
        assert subscribed == {interest.slug for interest in form.cleaned_data["interests"]}
        # Every subscription change has its consent record, written with it.
        changes = len(subscribed ^ {"r2p"})
        assert ConsentRecord.objects.count() - records == changes

    _in_rolled_back_transaction(check)


@FIXTURES
@given(interest_ids=st.lists(st.one_of(st.text(max_size=25), st.integers().map(str)), max_size=4))
@example(interest_ids=["9223372036854775808"])  # over the database's integer: was a 500
@example(interest_ids=["²", "\u0661"])  # digits to str.isdigit(), not all to int()
def test_resubscribe_with_hostile_interest_ids_never_crashes(supporter, interest_ids):
    """Undo after unsubscribe-all posts interest ids; junk ids restore nothing they name."""
    token = tokens.make_preferences_token(supporter)

    def check():
        CLIENT.post(f"/preferences/{token}/unsubscribe-all/")
        response = CLIENT.post(f"/preferences/{token}/resubscribe/", {"interest": interest_ids})
        assert response.status_code == 200
        restored = Subscription.objects.filter(supporter=supporter, status="subscribed")
        assert set(restored.values_list("interest__slug", flat=True)) <= {"r2p"}

    _in_rolled_back_transaction(check)


@FIXTURES
@given(
    email=st.one_of(st.emails(), st.text(max_size=300), st.just("a@b.c" + "x" * 400)),
    first=field_text,
    interests=interest_values,
    website=st.sampled_from(["", "http://spam.example"]),
)
def test_signup_form_with_hostile_values_stores_nothing(
    interest, other_interest, email, first, interests, website
):
    """/join/ never stores anything: it only emails a confirmation link (docs/self-service.md)."""

    def check():
        before = database_state()
        response = CLIENT.post(
            "/join/",
            {"email": email, "first_name": first, "interests": interests, "website": website},
        )
        assert response.status_code == 200
        assert changed_tables(before, database_state()) == []

    _in_rolled_back_transaction(check)


@FIXTURES
@given(email=st.one_of(st.emails(), st.text(max_size=300)))
def test_link_request_with_hostile_values_stores_nothing(supporter, email):
    def check():
        before = database_state()
        response = CLIENT.post("/preferences/", {"email": email})
        assert response.status_code == 200
        assert changed_tables(before, database_state()) == []

    _in_rolled_back_transaction(check)


def test_odd_query_strings_and_methods_on_a_valid_link_change_nothing(supporter):
    """GET never changes anything, whatever the query string says."""
    token = tokens.make_preferences_token(supporter)
    unsubscribe = tokens.make_unsubscribe_token(supporter)
    before = database_state()

    for url in (f"/preferences/{token}/", f"/unsubscribe/{unsubscribe}/"):
        for query in (
            "?scope=all",
            "?List-Unsubscribe=One-Click",
            "?interests=r2p&x=" + "y" * 5000,
        ):
            assert CLIENT.get(url + query).status_code in (200, 302)
        assert CLIENT.generic("OPTIONS", url).status_code == 405
        assert CLIENT.put(url, "scope=all").status_code == 405
        assert CLIENT.delete(url).status_code == 405

    assert changed_tables(before, database_state()) == []
