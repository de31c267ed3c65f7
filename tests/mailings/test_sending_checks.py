"""Settings that would make sending unsafe are refused by `manage.py check`."""

from mailings.apps import check_sending_settings


def ids(errors):
    return [error.id for error in errors]


def test_production_without_webhook_secret_is_an_error(settings):
    settings.DEBUG = False
    settings.ANYMAIL = {}

    assert "mailings.E001" in ids(check_sending_settings())
    settings.ANYMAIL = {"WEBHOOK_SECRET": "rally:secret"}
    assert "mailings.E001" not in ids(check_sending_settings())


def test_lease_shorter_than_two_call_timeouts_is_an_error(settings):
    settings.ANYMAIL = {"REQUESTS_TIMEOUT": 30.0, "WEBHOOK_SECRET": "a:b"}
    settings.RALLY_SEND_LEASE_SECONDS = 45

    assert ids(check_sending_settings()) == ["mailings.E002"]
    settings.RALLY_SEND_LEASE_SECONDS = 60
    assert ids(check_sending_settings()) == []
