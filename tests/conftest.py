import os

import hypothesis
import pytest
from django.contrib.auth.models import Group

from crm import roles
from mailings import webhooks
from tests import factories

# CI sets RALLY_REQUIRE_SERVICES=1: a test that needs PostgreSQL, Redis or
# Chromium then fails when the service is missing instead of being skipped.
REQUIRE_SERVICES = os.environ.get("RALLY_REQUIRE_SERVICES") == "1"
# Debian's Chromium, driven by Playwright in tests/browser/ (never a downloaded build).
CHROMIUM = "/usr/bin/chromium"

# Property tests (Hypothesis) try new inputs on every local run, so they keep finding
# new cases; CI tries the same ones each time, so a merge never fails on a case no
# change of its own introduced. A case found locally goes in as an @example.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if REQUIRE_SERVICES:
    hypothesis.settings.load_profile("ci")


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what this run leaves out
def pytest_collection_modifyitems(config, items):
    from django.conf import settings
    from django.db import connections

    missing = {
        "postgres": connections["default"].vendor != "postgresql"
        and "needs PostgreSQL (DATABASE_URL)",
        "redis": not settings.REDIS_URL and "needs Redis (REDIS_URL)",
        "browser": not os.path.exists(CHROMIUM) and f"needs Chromium ({CHROMIUM})",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and item.get_closest_marker(marker):
                if REQUIRE_SERVICES:
                    pytest.exit(f"{item.nodeid} {reason}, which CI must provide", returncode=3)
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True, scope="session")
def _own_var_folder(tmp_path_factory):
    """Keep the test run out of var/: its task queue, cache and uploads belong to `make run`.

    Without a broker or cache server, settings keep Celery's queue, the cache
    and uploaded files in var/; a task a test queues there would be picked
    up by the developer's next worker.
    """
    from django.conf import settings
    from django.test.utils import override_settings

    from project.celery import app

    var = tmp_path_factory.mktemp("var")
    caches = {
        alias: {**cache, "LOCATION": str(var / f"cache-{alias}")}
        if cache["BACKEND"].endswith("FileBasedCache")
        else cache
        for alias, cache in settings.CACHES.items()
    }
    saved_transport_options = app.conf.broker_transport_options
    if app.conf.broker_url.startswith("filesystem://"):
        for folder in ("broker", "broker-control"):
            (var / folder).mkdir()
        app.conf.broker_transport_options = {
            "data_folder_in": str(var / "broker"),
            "data_folder_out": str(var / "broker"),
            "control_folder": str(var / "broker-control"),
        }
    with override_settings(MEDIA_ROOT=str(var / "media"), CACHES=caches):
        yield
    app.conf.broker_transport_options = saved_transport_options


@pytest.fixture(autouse=True, scope="session")
def _mail_sink_of_the_test_run():
    """A mail sink of the test run's own, on a free port, in place of `make run`'s on :8025.

    Settings send mail to RALLY_MAILSINK_URL (default http://127.0.0.1:8025):
    a developer's running sink would otherwise receive what tests send, and
    show it among their own mail. Processes a test starts (workers, gunicorn)
    read the environment, so it points there too.
    """
    from mailsink import MailSink

    with MailSink(port=0, latency_ms=0) as sink, pytest.MonkeyPatch.context() as patch:
        patch.setenv("RALLY_MAILSINK_URL", sink.url)
        if "ANYMAIL_POSTMARK_API_URL" in os.environ:
            patch.setenv("ANYMAIL_POSTMARK_API_URL", sink.postmark_api_url)
        yield sink


@pytest.fixture(autouse=True)
def _own_mail_sink(settings, _mail_sink_of_the_test_run):
    sink = _mail_sink_of_the_test_run
    settings.RALLY_MAILSINK_URL = sink.url
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_API_URL": sink.postmark_api_url}


@pytest.fixture(autouse=True)
def _fast_and_local(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.SITE_URL = "https://rally.example.org"
    # Staff tests log in with force_login; the two-factor tests turn it on themselves.
    settings.RALLY_STAFF_2FA = "off"
    # Tests post the literal webhooks of many ESPs; production answers only its own.
    settings.RALLY_WEBHOOK_ESPS = [pattern.callback.esp_slug for pattern in webhooks.urlpatterns]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def interest(db):
    return factories.CampaignInterestFactory(slug="r2p", name="Responsibility to Protect")


@pytest.fixture
def other_interest(db):
    return factories.CampaignInterestFactory(slug="events", name="Events and actions")


@pytest.fixture
def partner(db):
    return factories.PartnerOrganisationFactory(slug="waging-peace", name="Waging Peace")


@pytest.fixture
def supporter(db, interest):
    """Alice: active, subscribed to Responsibility to Protect."""
    return factories.SupporterFactory(
        email="alice@example.org", first_name="Alice", subscribed_to=[interest]
    )


@pytest.fixture
def opted_out_supporter(db, interest):
    """Bob: unsubscribed from all email."""
    bob = factories.SupporterFactory(
        email="bob@example.org", first_name="Bob", subscribed_to=[interest]
    )
    from crm.services import supporter_unsubscribe

    supporter_unsubscribe(supporter=bob, method="email_link")
    bob.refresh_from_db()
    return bob


def _user_in(django_user_model, username, role):
    user = django_user_model.objects.create_user(
        username=username, password="pw", is_staff=True, email=f"{username}@rally.example.org"
    )
    roles.sync_role_permissions()
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def membership_user(db, django_user_model):
    return _user_in(django_user_model, "maya", roles.MEMBERSHIP_STAFF)


@pytest.fixture
def campaign_user(db, django_user_model):
    return _user_in(django_user_model, "carl", roles.CAMPAIGN_MANAGERS)


@pytest.fixture
def staff_member(membership_user):
    return membership_user


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password="pw", email="root@rally.example.org"
    )


@pytest.fixture
def tasks_run_now():
    """Run Celery tasks inline when queued, as a worker would, and raise their errors."""
    from project.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def fresh_cache(settings):
    """A cache (rate-limit counts) of this test's own, empty at the start."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"rally-test-{os.urandom(4).hex()}",
        }
    }


@pytest.fixture
def r2p_mailing(db, interest):
    """A newsletter sent for Responsibility to Protect."""
    from mailings.models import Mailing

    newsletter = Mailing.objects.create(name="R2P update", subject="The UK's duty to prevent")
    newsletter.interests.set([interest])
    return newsletter


@pytest.fixture(scope="session")
def _esp_simulator():
    from mailsink import MailSink

    with MailSink(port=0, latency_ms=0) as sink:
        yield sink


@pytest.fixture
def esp(_esp_simulator):
    """The loopback ESP simulator, empty, with no faults and no latency."""
    _esp_simulator.clear()
    _esp_simulator.set_faults(latency_ms=0)
    yield _esp_simulator
    _esp_simulator.clear()


@pytest.fixture
def postmark_esp(settings, esp):
    """Newsletters go through Anymail's real Postmark backend to the simulator."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "test-token",
        "POSTMARK_API_URL": esp.postmark_api_url,
    }
    settings.RALLY_BATCH_SEND = False
    return esp


@pytest.fixture
def mailgun_esp(settings, esp):
    """Newsletters go through Anymail's real Mailgun backend, batch sending on."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {
        "MAILGUN_API_KEY": "key-test",
        "MAILGUN_API_URL": esp.mailgun_api_url,
        "MAILGUN_SENDER_DOMAIN": "rally.example.org",
    }
    settings.RALLY_BATCH_SEND = True
    return esp


@pytest.fixture
def newsletter(db, interest):
    """A newsletter about the UK's duty to prevent atrocities, for R2P subscribers."""
    return factories.MailingFactory(name="Duty to prevent", interests=[interest])


@pytest.fixture
def subscribers(db, interest):
    """Five supporters subscribed to Responsibility to Protect."""
    return [
        factories.SupporterFactory(
            email=f"subscriber{n}@example.org", first_name=f"Reader{n}", subscribed_to=[interest]
        )
        for n in range(5)
    ]


@pytest.fixture
def partner_list(db, partner):
    """Preview a partner list (text or bytes) from Waging Peace; `confirm=True` applies it."""
    from crm import imports

    def run(content, *, file_name="list.csv", confirm=False, interests=(), actor=None, **options):
        data = content.encode() if isinstance(content, str) else content
        preview = imports.import_preview(
            data=data,
            file_name=file_name,
            partner=options.pop("partner", partner),
            interests=interests,
            options=imports.ImportOptions(**options),
            actor=actor,
        )
        if confirm:
            assert preview.batch is not None, [row.message for row in preview.plan.errors]
            preview.batch = imports.import_confirm(batch_id=preview.batch.pk, actor=actor)
        return preview

    return run


def xlsx_bytes(*sheets):
    """Return an XLSX workbook with one sheet per list of rows (a formula is a str "=…")."""
    import io

    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for number, rows in enumerate(sheets, 1):
        sheet = book.create_sheet(f"Sheet{number}")
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
