"""
Running a statement of crm/sql.py or mailings/sql.py and its ORM twin on the same data.

Callers ask `in_use()` of the app's sql module whether to take the statement
(PostgreSQL) or the ORM twin (any other database); patching it to False makes
PostgreSQL take the twin, so both run on the same server.
"""

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from crm import sql as crm_sql
from mailings import sql as mailings_sql

SQL_MODULES = {"crm": crm_sql, "mailings": mailings_sql}


@pytest.fixture
def both_ways(monkeypatch):
    """Return run(app, act): what `act()` returns with the statement, and with the ORM twin.

    Both runs start from the same data at the same frozen moment: each runs
    inside a transaction rolled back afterwards, so only the ids of the rows
    they add can differ. `act` runs the service and returns what it wrote.
    """

    def run(app, act):
        module = SQL_MODULES[app]
        moment = timezone.now()
        outcomes = []
        for statement in (True, False):
            with (
                monkeypatch.context() as patched,
                time_machine.travel(moment, tick=False),
                transaction.atomic(),
            ):
                if not statement:
                    patched.setattr(module, "in_use", lambda: False)
                # Each run must take the way it is named for, or the comparison proves nothing.
                assert module.in_use() is statement
                outcomes.append(act())
                transaction.set_rollback(True)
        return outcomes

    return run


def rows(queryset, **replace):
    """Return the rows of `queryset` as dicts without their ids, in a fixed order.

    `replace` maps a column to a function of its value (a supporter id to the
    address, say), for columns holding ids of rows a run added.
    """
    found = []
    for row in queryset.values():
        row.pop(queryset.model._meta.pk.attname)
        for column, function in replace.items():
            row[column] = function(row[column])
        found.append(row)
    return sorted(found, key=repr)
