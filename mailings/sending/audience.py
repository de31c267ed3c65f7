"""
Step 1: turn a mailing's audience into queued Delivery rows, in one statement.
"""

from django.db import connection as db
from django.utils import timezone

from mailings import sql
from mailings.models import Delivery, Mailing


def mailing_resolve_audience(*, mailing: Mailing) -> int:
    """Create one queued Delivery per recipient in one statement; return how many exist.

    Call inside a transaction holding the mailing's row lock.
    """
    audience = mailing.audience().values("pk")
    if audience.query.is_empty():
        return Delivery.objects.filter(mailing=mailing).count()
    query, params = audience.query.sql_with_params()
    sql.deliveries_insert_audience(query, params, mailing_id=mailing.pk, now=timezone.now())
    return Delivery.objects.filter(mailing=mailing).count()


def audience_tables_analyze():
    """ANALYZE the audience's tables if PostgreSQL has never gathered their statistics.

    Without statistics (autovacuum off, or a bulk load it has not caught up
    with) the planner guesses a handful of rows and may pick nested loops that
    run for minutes on 100,000 supporters. Cheap when there is nothing to do.
    """
    if db.vendor != "postgresql":
        return
    sql.tables_analyze_if_never(sql.audience_tables())


def deliveries_analyze():
    """Refresh PostgreSQL's statistics after a large audience was added.

    Autovacuum would get there eventually; the claims of the next minutes
    need a plan that knows the table just grew by 100,000 rows.
    """
    if db.vendor == "postgresql":
        sql.deliveries_analyze()
