"""Helpers for the hostile-input and permission tests."""

import base64

import pytest
from django.apps import apps

WEBHOOK_SECRET = "rally:webhook-secret"
WEBHOOK_AUTH = "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()
MAILGUN_SIGNING_KEY = "mailgun-signing-key"

# Everything a request could change: supporters, consent, history, suppressions,
# import batches, mailings and deliveries, staff accounts.
WATCHED_APPS = ("crm", "mailings", "auth")


def database_state():
    """Return every row of every watched table, to compare before and after a request."""
    state = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label in WATCHED_APPS and not model._meta.proxy:
            state[model._meta.label] = list(model.objects.order_by("pk").values_list())
    return state


def changed_tables(before, after):
    """Name the tables whose rows differ between two database_state() snapshots."""
    return sorted(label for label in before if before[label] != after[label])


@pytest.fixture
def webhook_settings(settings):
    """Anymail's webhook secret and Mailgun's signing key, as production sets them."""
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }
    return settings
