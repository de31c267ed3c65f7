"""
Rally's settings, read from the environment.

Every value has a default that runs on a fresh machine with nothing installed:
SQLite under var/, an embedded file-system Celery broker and the local mail
sink. Point DATABASE_URL, REDIS_URL and the ESP settings at real services to
run the same code in production (see .env.example and docs/deploy.md).
"""

import datetime
import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env")

# Where Rally keeps its local files (SQLite database, broker, cache, development key).
VAR_DIR = Path(env.str("RALLY_VAR_DIR", default="") or BASE_DIR / "var")

# Off unless asked for: a forgotten variable must not leave a site in development
# mode. `make run` and `make test` turn it on themselves.
DEBUG = env.bool("DEBUG", default=False)


def _development_secret_key(path):
    """Return the key kept in `path`, writing a random one there (mode 0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        try:
            # The web server, the worker and beat start together: whoever links
            # the file first wins, and all of them read the same key.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it, and a new key is made.")
    return key


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and DEBUG is off, so Rally refuses to start. In production "
            "set SECRET_KEY to a long random string, the same for every process (python -c "
            "'import secrets; print(secrets.token_urlsafe(50))'). For development set DEBUG=1 "
            "instead (`make run` does): a random key is then kept in var/secret-key."
        )
    # Development: a random key of this checkout's own, made once, as the admin
    # password is (manage.py ensure_admin); never a key published in the source.
    SECRET_KEY = _development_secret_key(VAR_DIR / "secret-key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Absolute links in emails (preference centre, one-click unsubscribe) start with this.
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")
SITE_NAME = env.str("RALLY_SITE_NAME", default="Rally")

INSTALLED_APPS = [
    "project.apps.RallyAdminConfig",  # django.contrib.admin with the two-factor step
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "anymail",
    "import_export",
    "simple_history",
    "django_countries",
    "csp",
    "project.apps.LoginLockoutConfig",  # django-axes
    "django_otp",
    "project.apps.TwoFactorDevicesConfig",  # django_otp.plugins.otp_totp
    "django_prose_editor",
    "ninja",
    "crm",
    "mailings",
    "mailings.journeys",
    "mailings.actions",
    "project.api",
]

MIDDLEWARE = [
    "project.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.csp.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out login is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
    {
        # The supporter pages (preference centre, unsubscribe, sign-up): see project/jinja2.py.
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates" / "jinja2"],
        "OPTIONS": {"environment": "project.jinja2.environment"},
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'rally.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share the file: WAL and immediate
    # transactions keep them from tripping over each other's locks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    postgresql = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    if postgresql and env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Bind parameters on the server, so psycopg can prepare a statement
        # once a connection has run it a few times: PostgreSQL then skips
        # parsing and planning it, half of its work on the supporter pages.
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5
        )
    # Behind PgBouncer in transaction pooling mode (docs/deploy.md).
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(
        "DISABLE_SERVER_SIDE_CURSORS", default=False
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="Europe/London")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# Redis: the broker, the cache and the shared send-rate limiter when set.
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "project.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "rally",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery: Redis when REDIS_URL (or CELERY_BROKER_URL) is set, otherwise an
# embedded broker kept in files under var/ so nothing needs installing.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "broker-control"),
    }
    for _folder in (_broker_dir, VAR_DIR / "broker-control"):
        _folder.mkdir(parents=True, exist_ok=True)
else:
    # A task whose worker dies unacknowledged comes back after this long.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Proves beat, broker and a worker all work; /healthz reads the stamp.
    "health-heartbeat": {"task": "project.health.heartbeat", "schedule": 30.0},
    # Scheduled mailings start from here: a periodic dispatcher, not ETA tasks
    # that a broker restart could lose.
    "mailings-dispatch-due": {
        "task": "mailings.tasks.dispatch_due_mailings",
        "schedule": env.float("RALLY_DISPATCH_SECONDS", default=15.0),
    },
    # Re-queues unfinished sending from database state (expired leases, tasks
    # lost with the broker) and marks finished mailings sent.
    "mailings-sweep": {
        "task": "mailings.tasks.sweep_sending",
        "schedule": env.float("RALLY_SWEEP_SECONDS", default=30.0),
    },
    # Applies recorded tracking events, should the task queued on their
    # arrival have been lost (mailings.tracking).
    "mailings-apply-tracking-events": {
        "task": "mailings.tasks.apply_tracking_events",
        "schedule": env.float("RALLY_TRACKING_APPLY_SECONDS", default=10.0),
    },
    # Opens, clicks and unsubscribes arrive for days after sending: the figures
    # the mailing list shows are counted again for mailings sent in the last
    # 30 days, each at most every 10 minutes (mailings.reports.stats_refresh_recent).
    "mailings-refresh-recent-stats": {
        "task": "mailings.tasks.refresh_recent_stats",
        "schedule": 300.0,
    },
    # Forgets uploaded partner files that were previewed but never confirmed.
    "crm-expire-import-previews": {"task": "crm.tasks.expire_import_previews", "schedule": 3600.0},
    # Queues again partner imports whose worker died mid-import.
    "crm-recover-imports": {
        "task": "crm.tasks.recover_imports",
        "schedule": env.float("RALLY_SWEEP_SECONDS", default=30.0),
    },
    # Counts every segment's members for the segment list, which never counts.
    "crm-count-segment-sizes": {"task": "crm.tasks.count_segment_sizes", "schedule": 600.0},
    # Counts the admin home's figures into the cache (project.dashboard); one
    # left waiting in the queue past the next is dropped.
    "dashboard-refresh": {
        "task": "project.tasks.dashboard_refresh",
        "schedule": env.float("RALLY_DASHBOARD_SECONDS", default=300.0),
        "options": {"expires": env.float("RALLY_DASHBOARD_SECONDS", default=300.0)},
    },
    # -- composer (beat entries) --
    # -- journeys (beat entries) --
    # Enrols whoever a live journey's trigger found, takes out whoever can no
    # longer be mailed and moves due supporters along (mailings.journeys.engine).
    "journeys-tick": {
        "task": "mailings.journeys.tasks.run_journeys",
        "schedule": env.float("RALLY_JOURNEY_TICK_SECONDS", default=30.0),
        "options": {"expires": env.float("RALLY_JOURNEY_TICK_SECONDS", default=30.0)},
    },
    # -- A/B tests and the deliverability guard (beat entries) --
    # Chooses the winner of A/B tests whose time is up (mailings.abtests):
    # a periodic check, not long-ETA tasks a broker restart could lose.
    "mailings-finish-ab-tests": {
        "task": "mailings.tasks.finish_ab_tests",
        "schedule": env.float("RALLY_AB_CHECK_SECONDS", default=60.0),
    },
    # -- actions and partner sync (beat entries) --
    # Emails signers who ticked a box, should the task their signature queued
    # have been lost (mailings.actions.services.confirmations_due).
    "actions-send-confirmations": {
        "task": "mailings.actions.send_confirmations",
        "schedule": env.float("RALLY_SWEEP_SECONDS", default=30.0),
    },
    # -- API and outbound webhooks (beat entries) --
    # Turns new consent records and audit events into webhook deliveries
    # (project.api.webhooks.webhooks_fan_out), then queues those due.
    "api-webhooks-fan-out": {
        "task": "project.api.tasks.webhooks_fan_out",
        "schedule": env.float("RALLY_WEBHOOK_OUTBOX_SECONDS", default=10.0),
    },
    # Queues again deliveries whose retry time has come, or whose worker died.
    "api-webhooks-requeue": {
        "task": "project.api.tasks.webhooks_requeue",
        "schedule": env.float("RALLY_WEBHOOK_OUTBOX_SECONDS", default=10.0) * 3,
    },
}
CELERY_TASK_ROUTES = {
    "mailings.tasks.send_mailing_batches": {"queue": "sending"},
    "mailings.tasks.start_mailing": {"queue": "sending"},
    "crm.tasks.import_confirm": {"queue": "imports"},
    "mailings.tasks.apply_tracking_events": {"queue": "webhooks"},
}
# The apps' tasks live in their tasks.py, found by autodiscover_tasks(). The
# project is no app, so its tasks (the heartbeat beside the /healthz check
# that reads it, and project/tasks.py) are imported by name.
CELERY_IMPORTS = ["project.health", "project.tasks"]
CELERY_TIMEZONE = TIME_ZONE

# Email. ESP settings come from the environment: EMAIL_BACKEND names an Anymail
# backend and every ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"]. With none
# set, mail goes to the local mail sink (python -m mailsink), which speaks
# Postmark's API and shows what it received at http://127.0.0.1:8025/.
RALLY_MAILSINK_URL = env.str("RALLY_MAILSINK_URL", default="http://127.0.0.1:8025")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="anymail.backends.postmark.EmailBackend")
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value
    for key, value in os.environ.items()
    if key.startswith("ANYMAIL_")
}
if "REQUESTS_TIMEOUT" in ANYMAIL:  # seconds per ESP call; the environment gives text
    ANYMAIL["REQUESTS_TIMEOUT"] = float(ANYMAIL["REQUESTS_TIMEOUT"])
if "EMAIL_BACKEND" not in os.environ:
    ANYMAIL.setdefault("POSTMARK_SERVER_TOKEN", "mailsink")
    ANYMAIL.setdefault("POSTMARK_API_URL", f"{RALLY_MAILSINK_URL}/postmark/")
# ESPs whose tracking webhooks (/anymail/<esp>/tracking/) are answered; every
# other ESP's URL is a 404. Defaults to the ESP of EMAIL_BACKEND; list two while
# moving from one ESP to another, so the old one's late events still arrive.
RALLY_WEBHOOK_ESPS = env.list(
    "RALLY_WEBHOOK_ESPS",
    default=[EMAIL_BACKEND.split(".")[2]] if EMAIL_BACKEND.startswith("anymail.backends.") else [],
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Rally <newsletter@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# Rally's own settings.
# Key for the hashes on the suppression list. Keep it stable: changing it makes
# every suppressed address unrecognisable. Defaults to one derived from SECRET_KEY.
RALLY_SUPPRESSION_KEY = env.str("RALLY_SUPPRESSION_KEY", default="")

# Seconds between counts of the admin home's figures (project.tasks.dashboard_refresh).
RALLY_DASHBOARD_SECONDS = env.float("RALLY_DASHBOARD_SECONDS", default=300.0)

# Partner list imports and exports (docs/import.md).
# Largest file accepted, in bytes.
RALLY_IMPORT_MAX_BYTES = env.int("RALLY_IMPORT_MAX_BYTES", default=50 * 1000 * 1000)
# Files with more rows than this are imported by a worker, with a progress bar.
RALLY_IMPORT_ASYNC_THRESHOLD = env.int("RALLY_IMPORT_ASYNC_THRESHOLD", default=5000)
# Hours an unconfirmed preview keeps its uploaded file.
RALLY_IMPORT_PREVIEW_HOURS = env.int("RALLY_IMPORT_PREVIEW_HOURS", default=24)
# django-import-export: Rally checks its own permissions (crm.import_supporters,
# crm.export_supporters) and escapes formulas itself, in every export.
IMPORT_EXPORT_SKIP_ADMIN_LOG = True
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False

# Sending newsletters (docs/sending.md explains each).
# Messages per second across all workers, held in Redis (0: as fast as possible).
RALLY_SEND_RATE = env.float("RALLY_SEND_RATE", default=0)
# Deliveries a worker claims at once; with batch sending, recipients per ESP call.
RALLY_SEND_BATCH_SIZE = env.int("RALLY_SEND_BATCH_SIZE", default=500)
# One ESP call per batch using Anymail's merge_data, where the ESP supports it.
RALLY_BATCH_SEND = env.bool("RALLY_BATCH_SEND", default=False)
# Without batch sending: ESP calls in flight at once per sending task.
RALLY_SEND_CONCURRENCY = env.int("RALLY_SEND_CONCURRENCY", default=16)
# Sending tasks started per mailing (run by the workers of the "sending" queue).
RALLY_SEND_TASKS = env.int("RALLY_SEND_TASKS", default=4)
# How long a claimed delivery stays reserved for its worker; must be well
# over one ESP call (ANYMAIL REQUESTS_TIMEOUT) so a live worker never loses it.
RALLY_SEND_LEASE_SECONDS = env.int("RALLY_SEND_LEASE_SECONDS", default=300)
# The sweeper restarts sending for a mailing whose workers were silent this long.
RALLY_SEND_STALL_SECONDS = env.int("RALLY_SEND_STALL_SECONDS", default=60)
# Give up on a delivery after this many transient failures.
RALLY_SEND_MAX_ATTEMPTS = env.int("RALLY_SEND_MAX_ATTEMPTS", default=12)
# An address for mailto: List-Unsubscribe, e.g. unsubscribe@example.org (optional).
RALLY_UNSUBSCRIBE_MAILTO = env.str("RALLY_UNSUBSCRIBE_MAILTO", default="")
# Test sends (which may carry a supporter's details) go to active staff accounts'
# addresses and to these only: addresses, or "@domain" for a whole domain, comma-separated.
RALLY_TEST_SEND_ALLOWED = env.list("RALLY_TEST_SEND_ALLOWED", default=[])
# Ask the ESP to track opens and clicks (changes links and adds a pixel).
RALLY_TRACK_OPENS = env.bool("RALLY_TRACK_OPENS", default=False)
RALLY_TRACK_CLICKS = env.bool("RALLY_TRACK_CLICKS", default=False)

# Supporter self-service pages (sign-up, preference centre, one-click
# unsubscribe; see docs/self-service.md). A wording's version defaults to a
# hash of its text, so changing the words always changes the recorded version.
RALLY_SIGNUP_WORDING = env.str(
    "RALLY_SIGNUP_WORDING",
    default=(
        "I would like {site_name} to email me about the campaign topics I have chosen. "
        "I can change my choices or unsubscribe at any time from the link in every email."
    ),
)
RALLY_SIGNUP_WORDING_VERSION = env.str("RALLY_SIGNUP_WORDING_VERSION", default="")
RALLY_PREFERENCES_WORDING = env.str(
    "RALLY_PREFERENCES_WORDING",
    default=(
        "Tick the campaign topics you would like {site_name} to email you about, "
        "and untick any you no longer want."
    ),
)
RALLY_PREFERENCES_WORDING_VERSION = env.str("RALLY_PREFERENCES_WORDING_VERSION", default="")
# A notice (sign-up confirmation, "your link", "your data") the ESP cannot take
# is tried again after this many seconds, doubling up to ten minutes, for about a day.
RALLY_NOTICE_RETRY_SECONDS = env.float("RALLY_NOTICE_RETRY_SECONDS", default=10.0)
# Seconds a sign-up confirmation link works (unconfirmed sign-ups are never stored).
RALLY_SIGNUP_CONFIRM_MAX_AGE = env.int("RALLY_SIGNUP_CONFIRM_MAX_AGE", default=7 * 24 * 3600)
# Seconds a "download my data" link works.
RALLY_DATA_LINK_MAX_AGE = env.int("RALLY_DATA_LINK_MAX_AGE", default=24 * 3600)
# Keep the IP address a sign-up came from on its consent record.
RALLY_RECORD_IP = env.bool("RALLY_RECORD_IP", default=False)
# Proxies in front of Rally that append to X-Forwarded-For (0: use the peer address).
RALLY_TRUSTED_PROXIES = env.int("RALLY_TRUSTED_PROXIES", default=0)
# Requests to the public forms per client network (an IPv4 address or an IPv6 /64) and
# per mailbox (the address without its +tag), as "count/period" with period s, m, h or d.
RALLY_RATE_LIMIT_PER_IP = env.str("RALLY_RATE_LIMIT_PER_IP", default="30/h")
RALLY_RATE_LIMIT_PER_ADDRESS = env.str("RALLY_RATE_LIMIT_PER_ADDRESS", default="5/h")
# Confirmation and link emails the public pages may queue in an hour, in all.
RALLY_NOTICES_PER_HOUR = env.int("RALLY_NOTICES_PER_HOUR", default=1000)
# Sites allowed to embed the sign-up form in a frame (CSP frame-ancestors); "*" for any.
RALLY_SIGNUP_FRAME_ANCESTORS = env.list("RALLY_SIGNUP_FRAME_ANCESTORS", default=["*"])

# Security. TLS-dependent settings (SSL redirect, secure cookies, HSTS) are on
# by default when DEBUG is off; turn them off only behind a proxy that does TLS.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp) for every page that sets none of its own
# (the supporter pages do: mailings/views.py): the admin runs only scripts it
# serves itself, so a link or text slipped into a page cannot run script.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # One inline handler, django-import-export's "Select all" on its export
        # page, is allowed by its hash and nothing else inline is.
        "script-src-attr": [
            "'unsafe-hashes'",
            "'sha256-wid4zL8fR53ZYy1ljOepzR77Dn6vWUUxuNnnWWBP3I8='",  # onSelectToggleChange(event)
        ],
        "style-src": ["'self'"],
        # style="" attributes, as django-import-export's and django-simple-history's
        # admin templates write: they can neither run script nor load anything.
        "style-src-attr": ["'unsafe-inline'"],
        # data: for the two-factor QR code and the admin's icons.
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Staff login lockout (django-axes; docs/security.md). After this many wrong
# passwords for one username from one client address, that pair is refused for
# the cool-off time (each further try restarts it). Other staff, and the same
# person elsewhere, can still log in. `manage.py axes_reset_username <name>` unlocks.
RALLY_LOGIN_FAILURE_LIMIT = env.int("RALLY_LOGIN_FAILURE_LIMIT", default=5)
RALLY_LOGIN_COOLOFF_MINUTES = env.int("RALLY_LOGIN_COOLOFF_MINUTES", default=60)
AXES_FAILURE_LIMIT = RALLY_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = datetime.timedelta(minutes=RALLY_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client address as the public forms' rate limits see it (RALLY_TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "mailings.ratelimit.client_ip"
AXES_LOCKOUT_CALLABLE = "project.staff_login.lockout_response"

# Two-factor login for staff (django-otp; docs/security.md): "superusers" (the
# default in production), "staff" (everyone who can open the admin) or "off".
# With DEBUG on the default is "off", so the demo admin of `make run` logs in
# with its password alone. Deciding by DEBUG rather than by a list of exempt
# usernames means no account is ever exempt in production, not even one called
# "admin" made by manage.py ensure_admin.
RALLY_STAFF_2FA = env.str("RALLY_STAFF_2FA", default="off" if DEBUG else "superusers")
if RALLY_STAFF_2FA not in ("superusers", "staff", "off"):
    raise ImproperlyConfigured(
        f"RALLY_STAFF_2FA is {RALLY_STAFF_2FA!r}: set it to superusers, staff or off."
    )
# The name authenticator apps show beside the code.
OTP_TOTP_ISSUER = SITE_NAME
# Nobody, superusers included, can read another person's TOTP secret in the admin.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
# Largest ESP webhook body accepted, in bytes; larger ones get 413 unread. One
# tracking event is a few KB; SendGrid's batches stay under 768 KB.
RALLY_WEBHOOK_MAX_BYTES = env.int("RALLY_WEBHOOK_MAX_BYTES", default=1_000_000)

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # or "json" for log shippers
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "project.logging.ContextFilter"},
        "link_tokens": {"()": "project.logging.LinkTokenFilter"},
    },
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s "
            "[req=%(request_id)s task=%(task_id)s] %(message)s"
        },
        "json": {"()": "project.logging.JSONFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "link_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own handlers (and runserver's request lines) would print link
        # tokens before the console handler strips them: everything "django"
        # logs goes through the console handler alone.
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # lockouts, not every login
    },
}

# Error reporting to Sentry, when SENTRY_DSN is set and sentry-sdk is installed
# (pip install sentry-sdk). Personal data is never sent.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk

    from project.logging import sentry_event_without_link_tokens

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        send_default_pii=False,
        before_send=sentry_event_without_link_tokens,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# -- composer (settings) --

# -- journeys (settings) --
# A journey's "day" in seconds: waits of N days last N times this (shortened
# for demos and tests, never in production).
RALLY_JOURNEY_DAY_SECONDS = env.float("RALLY_JOURNEY_DAY_SECONDS", default=86400.0)
# Waits "until Tuesday at 10:00" use the supporter's country's time zone, else this.
RALLY_JOURNEY_TIME_ZONE = env.str("RALLY_JOURNEY_TIME_ZONE", default="Europe/London")
# Enrolments moved along per claim, and how long a claim holds them.
RALLY_JOURNEY_BATCH_SIZE = env.int("RALLY_JOURNEY_BATCH_SIZE", default=1000)
RALLY_JOURNEY_LEASE_SECONDS = env.int("RALLY_JOURNEY_LEASE_SECONDS", default=300)
# How soon a supporter whose previous journey email is not yet sent is looked at again.
RALLY_JOURNEY_POLL_SECONDS = env.float("RALLY_JOURNEY_POLL_SECONDS", default=60.0)
# How long one tick keeps moving supporters along before leaving the rest to the next.
RALLY_JOURNEY_TICK_BUDGET_SECONDS = env.float("RALLY_JOURNEY_TICK_BUDGET_SECONDS", default=25.0)

# -- A/B tests and the deliverability guard (settings) --
# The deliverability guard (mailings.guard) pauses a sending mailing whose hard
# bounces or complaints pass these percentages of the messages sent, judged over
# at least the first RALLY_GUARD_WINDOW messages (or the whole audience, if
# smaller). 0 turns a check off.
RALLY_GUARD_BOUNCE_PERCENT = env.float("RALLY_GUARD_BOUNCE_PERCENT", default=5.0)
RALLY_GUARD_COMPLAINT_PERCENT = env.float("RALLY_GUARD_COMPLAINT_PERCENT", default=0.1)
RALLY_GUARD_WINDOW = env.int("RALLY_GUARD_WINDOW", default=1000)
# A sending task counts a mailing's bounces at most this often (the sweeper too).
RALLY_GUARD_CHECK_SECONDS = env.float("RALLY_GUARD_CHECK_SECONDS", default=5.0)
# How often beat looks for A/B tests whose time is up.
RALLY_AB_CHECK_SECONDS = env.float("RALLY_AB_CHECK_SECONDS", default=60.0)

# -- actions and partner sync (settings) --
# Action pages (/act/<slug>/, docs/actions.md). The box to hear from the charity,
# unless an action words its own; the recorded version is a hash of the text.
RALLY_ACTION_OPT_IN_WORDING = env.str(
    "RALLY_ACTION_OPT_IN_WORDING",
    default=(
        "Yes, {site_name} may email me about this campaign and others like it. "
        "I can unsubscribe at any time from the link in every email."
    ),
)
# Opting in on an action page waits for a click in a confirmation email, as /join/ does.
RALLY_ACTIONS_DOUBLE_OPT_IN = env.bool("RALLY_ACTIONS_DOUBLE_OPT_IN", default=True)
# Signatures per client network (petitions are signed from offices and events on one address).
RALLY_ACTION_RATE_LIMIT_PER_IP = env.str("RALLY_ACTION_RATE_LIMIT_PER_IP", default="300/h")
# Seconds an action page's body and its count are served from the cache.
RALLY_ACTION_CACHE_SECONDS = env.int("RALLY_ACTION_CACHE_SECONDS", default=10)

# -- API and outbound webhooks (settings) --
# Calls each API key may make, as "count/period" with period s, m, h or d (docs/api.md).
RALLY_API_RATE_LIMIT = env.str("RALLY_API_RATE_LIMIT", default="120/m")
# Outbound webhooks (docs/api.md): seconds to wait for an endpoint's answer,
# hours to keep retrying a delivery, and failed attempts in a row after which
# the endpoint is paused and staff are told.
RALLY_WEBHOOK_TIMEOUT = env.float("RALLY_WEBHOOK_TIMEOUT", default=5.0)
RALLY_WEBHOOK_RETRY_HOURS = env.float("RALLY_WEBHOOK_RETRY_HOURS", default=24.0)
RALLY_WEBHOOK_PAUSE_AFTER = env.int("RALLY_WEBHOOK_PAUSE_AFTER", default=20)
# Let webhooks reach loopback, private and link-local addresses: only for a
# receiver on the same machine or network in development. Off, Rally refuses
# them, so an endpoint URL cannot be used to probe the internal network.
RALLY_WEBHOOK_ALLOW_PRIVATE = env.bool("RALLY_WEBHOOK_ALLOW_PRIVATE", default=False)
