"""Erasure leaves the supporter's name, address and postcode nowhere in the database.

Not in the supporter row, its change history, the admin's log of edits, the
mailing history, nor any other table: every column of every table is searched.
"""

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.urls import reverse

from crm.models import Supporter
from mailings.models import Delivery, DeliveryEvent
from tests.factories import DeliveryFactory, MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

EMAIL = "zebedee.quixotic@example.org"
NAMES = ("Zebedee", "Quixotic")
POSTCODE = "ZQ9 9ZZ"


def change_form_data(response):
    """Return the POST an unchanged submit of the admin change form at `response` would send."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = (
                [str(v) for v in value] if isinstance(value, list) else str(value)
            )
    return data


def find_everywhere(needles):
    """Return "table.column: needle" for every column of every table holding any needle."""
    found = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                for needle in needles:
                    cursor.execute(
                        f"SELECT COUNT(*) FROM {quote(table)} "
                        f"WHERE LOWER(CAST({quote(column.name)} AS TEXT)) LIKE %s",
                        [f"%{needle.lower()}%"],
                    )
                    if cursor.fetchone()[0]:
                        found.append(f"{table}.{column.name}: {needle}")
    return found


@pytest.fixture
def zebedee(interest):
    """A supporter with a subscription, consent history and a newsletter that bounced."""
    person = SupporterFactory(
        email=EMAIL,
        first_name="Zeb",
        last_name=NAMES[1],
        postcode=POSTCODE,
        subscribed_to=[interest],
    )
    delivery = DeliveryFactory(
        mailing=MailingFactory(interests=[interest]),
        supporter=person,
        status=Delivery.Status.FAILED,
        error=f"Invalid 'To' address: '{EMAIL}'.",
    )
    DeliveryEvent.objects.create(
        delivery=delivery,
        mailing=delivery.mailing,
        esp_name="Postmark",
        dedupe_key="bounce-1",
        event_type="bounced",
        timestamp=delivery.created_at,
        url=f"https://rally.example.org/p/?email={EMAIL}",
        reason=f"{EMAIL} does not exist",
    )
    return person


def test_erased_supporter_edited_in_the_admin_is_found_nowhere(client, superuser, zebedee):
    client.force_login(superuser)
    change_url = reverse("admin:crm_supporter_change", args=[zebedee.pk])
    data = change_form_data(client.get(change_url))
    data.update(first_name=NAMES[0], notes=f"Met {NAMES[0]} {NAMES[1]} at the vigil, {POSTCODE}")
    response = client.post(change_url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    # The edit left its traces: the admin's log and the change history name them.
    entry = LogEntry.objects.get(object_id=str(zebedee.pk))
    assert entry.object_repr == f"{NAMES[0]} {NAMES[1]}"
    assert zebedee.history.count() == 2
    assert set(find_everywhere([EMAIL, *NAMES, POSTCODE])) >= {
        "django_admin_log.object_repr: Zebedee",
        "crm_historicalsupporter.email: " + EMAIL,
    }

    response = client.post(reverse("admin:crm_supporter_erase", args=[zebedee.pk]))

    assert response.status_code == 302
    assert Supporter.objects.get(pk=zebedee.pk).status == Supporter.Status.ERASED
    assert find_everywhere([EMAIL, "zebedee", *NAMES, POSTCODE, POSTCODE.replace(" ", "")]) == []
    # Who changed the record, when, and which fields stay on the log.
    entry.refresh_from_db()
    assert entry.user == superuser
    assert entry.object_repr == f"Supporter #{zebedee.pk} (erased)"
    assert json.loads(entry.change_message) == [{"changed": {"fields": ["First name", "Notes"]}}]
