"""Row counts from PostgreSQL's statistics, for lists too long to count on every page view.

Counting a million supporters reads every row of the table, or of an index
(about half a second on PostgreSQL, on each page of the admin's list).
The planner already keeps estimates: the table's row count as of its last
VACUUM or ANALYZE (autovacuum keeps it close), and for a filtered list the
rows it expects a query to return.
"""

import json

from django.db import connections

from crm import sql


def estimated_count(queryset) -> int | None:
    """Return PostgreSQL's estimate of the rows in `queryset`, or None on other databases.

    The whole table's estimate comes from pg_class; a filtered list's from
    EXPLAIN (the query is planned, not run).
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    query = queryset.query
    if not query.where and not query.distinct and not query.combinator:
        rows = sql.table_row_estimate(connection, queryset.model)
        # -1: never vacuumed or analysed; EXPLAIN then guesses from the table's size.
        if rows >= 0:
            return rows
    plan = json.loads(queryset.order_by().explain(format="json"))
    return round(plan[0]["Plan"]["Plan Rows"])
