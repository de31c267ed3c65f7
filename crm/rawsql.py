"""
Plain SQL for the few fixed queries behind every supporter link.

The preference centre and one-click unsubscribe answer a burst of requests
after each newsletter. For their handful of fixed queries, compiling the ORM's
query and running a RawQuerySet cost more than the database spends on them,
so they are written as SQL. These helpers keep that SQL honest: column lists
come from the models, values are always parameters, and rows come back as
ordinary model instances (fields not selected load on first use, as with
`QuerySet.only()`).
"""

import functools

from django.db import connection

# What the supporter pages show of a campaign interest.
INTEREST_FIELDS = ("id", "slug", "name", "description", "position")


def columns(model, names, alias) -> str:
    """Return "alias.column, ..." for the fields `names` of `model`, in the model's field order."""
    return ", ".join(f"{alias}.{field.column}" for field in _fields(model, names))


def instances(model, names, rows, *extra) -> list:
    """Return a `model` instance for each row selected by `columns(model, names, ...)`.

    Each row may carry more columns after the model's; they become attributes
    named by `extra`.
    """
    attnames = [field.attname for field in _fields(model, names)]
    count = len(attnames)
    found = []
    for row in rows:
        instance = model.from_db(connection.alias, attnames, row[:count])
        for name, value in zip(extra, row[count:], strict=True):
            setattr(instance, name, value)
        found.append(instance)
    return found


@functools.cache
def _fields(model, names):
    # Model.from_db takes values in the order of the model's concrete fields.
    return tuple(field for field in model._meta.concrete_fields if field.name in names)


@functools.cache
def sent_for_mailing(alias) -> str:
    """Return a condition on interests aliased `alias`: the mailing (parameter %s) was for it."""
    from crm.models import CampaignInterest

    through = CampaignInterest.mailings.through._meta
    return (
        f"{alias}.id IN (SELECT {through.get_field('campaigninterest').column} "  # noqa: S608
        f"FROM {through.db_table} WHERE {through.get_field('mailing').column} = %s)"
    )
