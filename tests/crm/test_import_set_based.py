"""Imports are set-based: a fixed number of queries per 10,000 rows, never one per row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm import imports
from tests.factories import SupporterFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def queries_for(partner_list, interest, rows):
    content = "Email,First name\n" + "".join(
        f"person{n}@example.org,Person{n}\n" for n in range(rows)
    )
    with CaptureQueriesContext(connection) as preview_queries:
        preview = partner_list(content, interests=[interest])
    with CaptureQueriesContext(connection) as confirm_queries:
        imports.import_confirm(batch_id=preview.batch.pk)
    return len(preview_queries), len(confirm_queries)


def test_query_count_does_not_grow_with_the_file(partner_list, interest):
    for n in range(0, 2000, 2):
        SupporterFactory(email=f"person{n}@example.org", first_name="")
    small = queries_for(partner_list, interest, 40)
    large = queries_for(partner_list, interest, 4000)
    assert small == large
    assert large[0] <= 15
    assert large[1] <= 40
