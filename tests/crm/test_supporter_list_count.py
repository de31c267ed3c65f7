"""The supporter list says how many: exactly up to a limit, "about" past it, never counting all."""

import pytest
from django.db import connection
from django.urls import reverse

from crm.admin.common import EstimatingPaginator
from crm.models import Supporter, email_hash

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:crm_supporter_changelist")


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


def add_supporters(count, prefix="listed", **fields):
    emails = [f"{prefix}{n}@example.org" for n in range(count)]
    Supporter.objects.bulk_create(
        Supporter(email=email, email_hash=email_hash(email), **fields) for email in emails
    )


def test_two_thousand_supporters_are_counted_exactly(staff_client):
    add_supporters(2_000)

    html = staff_client.get(CHANGELIST).content.decode()

    assert "2,000 supporters" in html
    # Nothing is narrowed, so no "N results (Show all)" beside the search box.
    assert " results (" not in html
    assert "Show all" not in html
    assert "Select all 2,000 supporters" in html


def test_a_search_says_how_many_match_and_show_all_clears_it(staff_client):
    add_supporters(120, first_name="Ada")
    add_supporters(3, first_name="Bo", prefix="other")

    html = staff_client.get(CHANGELIST, {"q": "ada"}).content.decode()

    assert '120 results (<a href="?">Show all</a>)' in html
    assert "120 supporters" in html
    # At most list_max_show_all rows: "Show all" below the list shows them on one page.
    everyone = staff_client.get(CHANGELIST, {"q": "ada", "all": ""})
    assert len(everyone.context["cl"].result_list) == 120
    assert len(staff_client.get(CHANGELIST).context["cl"].result_list) == 50
    assert "123 supporters" in staff_client.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    ("count", "text"),
    [(12, "about 12"), (123_456, "about 120,000"), (1_234_567, "about 1.2 million")],
)
def test_an_estimate_is_rounded_as_people_say_it(count, text, monkeypatch):
    paginator = EstimatingPaginator(Supporter.objects.none(), 50)
    monkeypatch.setattr(EstimatingPaginator, "_counted", (count, True))

    assert paginator.count_text == text


@pytest.mark.postgres
def test_past_the_limit_the_count_is_postgresqls_estimate(staff_client, monkeypatch):
    """Beyond the limit the list reads no more than limit + 1 rows, unordered, and says "about"."""
    monkeypatch.setattr(EstimatingPaginator, "EXACT_UP_TO", 10)
    add_supporters(60)  # more than one page of 50
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_supporter")

    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        html = staff_client.get(CHANGELIST).content.decode()
    filtered = staff_client.get(CHANGELIST, {"status__exact": "active"}).content.decode()

    assert "about 60 supporters" in html
    assert "Select all supporters that match (about 60)" in html
    counts = [sql for sql in statements if "COUNT(" in sql.upper()]
    assert counts
    assert all("LIMIT 11" in sql for sql in counts), counts
    # Unordered, so PostgreSQL need not walk a filtered list in the list's order.
    assert not any("ORDER BY" in sql for sql in counts), counts
    assert "about" in filtered
    assert "results (" in filtered
