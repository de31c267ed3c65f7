"""
Step 1: turn a mailing's audience into queued Delivery rows, in one statement.
"""

from django.db import connection as db
from django.utils import timezone

from mailings.models import Delivery, Mailing


def mailing_resolve_audience(*, mailing: Mailing) -> int:
    """Create one queued Delivery per recipient in one statement; return how many exist.

    Call inside a transaction holding the mailing's row lock.
    """
    audience = mailing.audience().values("pk")
    if audience.query.is_empty():
        return Delivery.objects.filter(mailing=mailing).count()
    query, params = audience.query.sql_with_params()
    table = Delivery._meta.db_table
    # Columns without a database default must be listed; the rest are NULL.
    # The CTE names the audience's one column, whatever the ORM called it.
    sql = (
        f"WITH audience(supporter_id) AS ({query}) "  # noqa: S608 - SQL from the ORM
        f"INSERT INTO {table} "
        "(mailing_id, supporter_id, status, attempts, claimed_by, esp_message_id, error, "
        "created_at) "
        "SELECT %s, supporter_id, %s, 0, '', '', '', %s FROM audience WHERE true "
        "ON CONFLICT (mailing_id, supporter_id) DO NOTHING"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, mailing.pk, Delivery.Status.QUEUED, timezone.now()])
    return Delivery.objects.filter(mailing=mailing).count()


AUDIENCE_TABLES = ["crm_supporter", "crm_subscription", "crm_suppression", "crm_segmentmembership"]


def audience_tables_analyze():
    """ANALYZE the audience's tables if PostgreSQL has never gathered their statistics.

    Without statistics (autovacuum off, or a bulk load it has not caught up
    with) the planner guesses a handful of rows and may pick nested loops that
    run for minutes on 100,000 supporters. Cheap when there is nothing to do.
    """
    if db.vendor != "postgresql":
        return
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
            "AND last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 1000",
            [AUDIENCE_TABLES],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'ANALYZE "{table}"')


def deliveries_analyze():
    """Refresh PostgreSQL's statistics after a large audience was added.

    Autovacuum would get there eventually; the claims of the next minutes
    need a plan that knows the table just grew by 100,000 rows.
    """
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(f"ANALYZE {Delivery._meta.db_table}")
