"""Postroute settings: every value comes from the environment, typed, with a
safe development default and a loud error where production needs a value.
The README lists each variable."""

import socket
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config import logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Variables already in the environment win over the file; ENV_FILE= (empty)
# reads none, as the tests do.
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

# What the product writes beside its code in development (SQLite, the
# filesystem broker, the SMTP sink's letters, imports waiting, heartbeats).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-key-never-use-in-production-0123456789abcdefghijklmnop"
# Previous SECRET_KEYs (comma-separated) that still verify what they signed:
# after a rotation the unsubscribe links in letters already delivered, the
# sessions and the pending verification and reset links keep working. New
# signatures use SECRET_KEY only; drop an old key once its links may expire.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# "saas": one hosted instance for many tenants (no port 25, platform server).
# "self_hosted": one organisation runs it (any port, internal SMTP allowed).
DEPLOYMENT_MODE = env.str("DEPLOYMENT_MODE", default="saas")
if DEPLOYMENT_MODE not in ("saas", "self_hosted"):
    raise ImproperlyConfigured("DEPLOYMENT_MODE must be 'saas' or 'self_hosted'.")

# Fernet keys (comma-separated, newest first) that encrypt the SMTP/IMAP
# passwords tenants store. Empty: a key derived from SECRET_KEY.
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])

# Sending servers. Private, loopback and other internal addresses are
# refused for tenants' servers in SaaS mode; this switch lets development and
# tests reach a local sink, and may not be on in SaaS production.
SERVERS_ALLOW_PRIVATE_HOSTS = env.bool("SERVERS_ALLOW_PRIVATE_HOSTS", default=DEBUG)
if SERVERS_ALLOW_PRIVATE_HOSTS and not DEBUG and DEPLOYMENT_MODE == "saas":
    raise ImproperlyConfigured("SERVERS_ALLOW_PRIVATE_HOSTS may not be on in SaaS production.")
# Contacts, senders and reply-to addresses on special-use names (corp.local,
# x.internal, y.test): a self-hosted company mails its own network. A hosted
# platform may not: its default server would look such names up in the
# platform's own network.
ALLOW_SPECIAL_USE_DOMAINS = env.bool("ALLOW_SPECIAL_USE_DOMAINS", default=DEPLOYMENT_MODE == "self_hosted")
if ALLOW_SPECIAL_USE_DOMAINS and not DEBUG and DEPLOYMENT_MODE == "saas":
    raise ImproperlyConfigured("ALLOW_SPECIAL_USE_DOMAINS may not be on in SaaS production.")
# Addresses under .test (RFC 6761's name for tests) pass in every mode; only
# the test settings turn this on.
ALLOW_TEST_DOMAIN = False
# "Internal SMTP" (self-hosted only): the mail server on this host.
INTERNAL_SMTP_HOST = env.str("INTERNAL_SMTP_HOST", default="localhost")
INTERNAL_SMTP_PORT = env.int("INTERNAL_SMTP_PORT", default=25)
# The name Postroute gives in EHLO (a name, not looked up in DNS).
SMTP_HELO_NAME = env.str("SMTP_HELO_NAME", default=socket.gethostname())
# A connection test never takes longer than this many seconds in all,
# however slowly the server talks (servers.deadlines).
SERVER_PROBE_TIMEOUT = env.float("SERVER_PROBE_TIMEOUT", default=20.0)
# Connection tests a tenant may start per minute, and a user across all
# their organisations.
CONNECTION_TESTS_PER_MINUTE = env.int("CONNECTION_TESTS_PER_MINUTE", default=10)
# An extra CA bundle to trust besides the system's (a company's own CA).
SERVERS_EXTRA_CA_FILE = env.str("SERVERS_EXTRA_CA_FILE", default="")
# Deliverability checks (servers.deliverability): the DNS server to ask
# ("" = the system's resolver, "host:port", "off" = no checks), the seconds
# one page may spend on DNS in all, and how long answers are kept.
DNS_RESOLVER = env.str("DNS_RESOLVER", default="")
DNS_TIMEOUT = env.float("DNS_TIMEOUT", default=2.0)
DNS_CACHE_SECONDS = env.int("DNS_CACHE_SECONDS", default=300)
DNS_FAILURE_CACHE_SECONDS = env.int("DNS_FAILURE_CACHE_SECONDS", default=60)
# The SPF name the operator publishes for the platform's servers (tenants add
# include:<it> to their SPF); empty: the addresses of each server's host.
PLATFORM_SPF_INCLUDE = env.str("PLATFORM_SPF_INCLUDE", default="")

# The public address of this installation, for links in letters
# (unsubscribe) that workers build without a request. Unset, the local
# address `make run` serves on (WEB_PORT, which it exports to every process).
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{env.int('WEB_PORT', default=8000)}").rstrip("/")

# Dispatch: letters per batch (one SMTP connection), the SMTP timeout, and
# the retry schedule of temporary failures (seconds, doubling, capped). The
# timeout is a total: opening the connection (connect, TLS, greeting, EHLO,
# STARTTLS, AUTH) gets that many seconds in all, and so does each letter's
# exchange, however slowly the server talks; it also bounds each read.
DISPATCH_BATCH = env.int("DISPATCH_BATCH", default=200)
DISPATCH_SMTP_TIMEOUT = env.float("DISPATCH_SMTP_TIMEOUT", default=30.0)
DISPATCH_MAX_ATTEMPTS = env.int("DISPATCH_MAX_ATTEMPTS", default=5)
DISPATCH_RETRY_BASE = env.int("DISPATCH_RETRY_BASE", default=60)
DISPATCH_RETRY_MAX = env.int("DISPATCH_RETRY_MAX", default=3600)
# Record results on a writer thread so SMTP never waits for a commit (off in
# tests, whose data lives in one open transaction).
DISPATCH_RECORD_THREAD = env.bool("DISPATCH_RECORD_THREAD", default=True)
# A letter's result is committed, to disk, before the next letter is
# accepted (the duplicate bound). 0 skips waiting for the disk
# (synchronous_commit off on the writer's connection): a little faster on a
# slow disk, and a killed worker still loses nothing, but a crash of
# PostgreSQL itself may forget the last fraction of a second of results.
DISPATCH_DURABLE_RESULTS = env.bool("DISPATCH_DURABLE_RESULTS", default=True)
# Sessions a dispatch process records its letters sent over
# (mailing.dispatch.lane): two conversations' commits, each waiting for the
# disk, run side by side instead of one behind the other.
DISPATCH_LANES = env.int("DISPATCH_LANES", default=2)
# How many workers may send one mailing side by side (chains of batches).
DISPATCH_CHAINS = env.int("DISPATCH_CHAINS", default=2)
# A chain runs batch after batch in one task for this long (seconds), then
# queues its next task behind the others waiting for a worker.
DISPATCH_SLICE = env.float("DISPATCH_SLICE", default=5.0)
# How often the scheduler looks for work (seconds).
DISPATCH_TICK = env.float("DISPATCH_TICK", default=10.0)

# Request bodies (other than the import's file): 4 MiB, so that a template
# whose two bodies are at their limit (512 KB each, mailing.models.content)
# still arrives when the browser percent-encodes every byte as three, and
# the error shows next to the field. Anything larger is refused with 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# Contact imports: the largest CSV accepted, and where uploads wait
# (random names, deleted when the import ends).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
IMPORTS_DIR = Path(env.str("IMPORTS_DIR", default=str(VAR_DIR / "imports")))
# Per tenant: uploads waiting for their column mapping (removed after an
# hour), and the bytes of every file still waiting, queued or importing.
IMPORT_MAX_WAITING = env.int("IMPORT_MAX_WAITING", default=3)
IMPORT_MAX_PENDING_BYTES = env.int("IMPORT_MAX_PENDING_BYTES", default=3 * IMPORT_MAX_BYTES)

# Bounce mailboxes: how often they are read (seconds), and after how many
# soft bounces within how many days an address is suppressed.
BOUNCE_CHECK_INTERVAL = env.int("BOUNCE_CHECK_INTERVAL", default=300)
# A mailbox that fails to be read waits twice as long after each failure in
# a row, from one interval up to this many seconds.
BOUNCE_BACKOFF_MAX = env.int("BOUNCE_BACKOFF_MAX", default=6 * 3600)
BOUNCE_SOFT_LIMIT = env.int("BOUNCE_SOFT_LIMIT", default=3)
BOUNCE_SOFT_WINDOW_DAYS = env.int("BOUNCE_SOFT_WINDOW_DAYS", default=30)
# Seconds one phase of reading a bounce mailbox may take in all (connecting
# and logging in, the folder, the search or listing, each message).
BOUNCE_READER_TIMEOUT = env.float("BOUNCE_READER_TIMEOUT", default=60.0)

# Webhooks (accounts/webhooks): the seconds one attempt may take in all
# (connect, TLS, request, answer), the first wait before a retry (doubling
# after each failure), how long after the event attempts go on, and how
# much of the receiver's answer the delivery log keeps.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)
WEBHOOK_RETRY_BASE = env.int("WEBHOOK_RETRY_BASE", default=60)
WEBHOOK_RETRY_WINDOW = env.int("WEBHOOK_RETRY_WINDOW", default=24 * 3600)
WEBHOOK_RESPONSE_CHARS = env.int("WEBHOOK_RESPONSE_CHARS", default=1000)

# Retention (config/retention.py), in days; 0 keeps for ever. The letters'
# copies of contact data (their `context`) are cleared that long after the
# mailing finished; the letters themselves, with address and result, stay.
RETENTION_DAYS = {
    "letter_contact_data": env.int("RETENTION_LETTER_CONTACT_DATA_DAYS", default=90),
    "connection_tests": env.int("RETENTION_CONNECTION_TESTS_DAYS", default=30),
    "throttles": env.int("RETENTION_THROTTLES_DAYS", default=7),
    "import_rejections": env.int("RETENTION_IMPORT_REJECTIONS_DAYS", default=30),
    "bounce_reports": env.int("RETENTION_BOUNCE_REPORTS_DAYS", default=180),
    "webhook_deliveries": env.int("RETENTION_WEBHOOK_DELIVERIES_DAYS", default=30),
}
RETENTION_BATCH = env.int("RETENTION_BATCH", default=1000)
RETENTION_RUN_SECONDS = env.int("RETENTION_RUN_SECONDS", default=480)

# The HTTP API (mailing/api, README "API"): requests per minute per key and
# per organisation, the largest JSON body (a bulk upsert of API_BULK_MAX_ROWS
# contacts fits), and how long an Idempotency-Key's answer is kept.
API_RATE_LIMIT = env.int("API_RATE_LIMIT", default=600)
API_TENANT_RATE_LIMIT = env.int("API_TENANT_RATE_LIMIT", default=1200)  # all of an organisation's keys together
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=16 * 1024 * 1024)
API_BULK_MAX_ROWS = 10_000
API_IDEMPOTENCY_HOURS = env.int("API_IDEMPOTENCY_HOURS", default=24)
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mailing.api.problems.exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["mailing.api.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Postroute API",
    "DESCRIPTION": (
        "Push contacts, start mailings, and read what each server may still send and which addresses bounced "
        "or unsubscribed. Authenticate with `Authorization: Bearer <key>` (Organisation settings → API keys). "
        "Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The API's ids in paths, read in small letters or capitals (mailing.api.urls).
    "PATH_CONVERTER_OVERRIDES": {"anyuuid": {"type": "string", "format": "uuid"}},
    "SCHEMA_PATH_PREFIX": r"/api/v1",  # operations grouped by resource: contacts, lists, mailings…
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "mailing.api.schema.document_problems"],
}

# Operations: /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`
# (empty: nobody); /readyz wants beat and a worker on every queue seen
# within READY_HEARTBEAT_MAX_AGE seconds.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
READY_HEARTBEAT_MAX_AGE = env.int("READY_HEARTBEAT_MAX_AGE", default=90)
# Errors go to Sentry when SENTRY_DSN is set (config/sentry.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)

# The admin lives at an unguessable-ish path of the operator's choice.
ADMIN_URL = env.str("ADMIN_URL", default="staff/").strip("/") + "/"
if ADMIN_URL == "admin/":
    raise ImproperlyConfigured("ADMIN_URL must not be 'admin/'; pick another path.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "servers",
    "mailing",
    "config.apps.OpsConfig",
]

MIDDLEWARE = [
    # Every response carries its request id, the ops endpoints' too.
    "config.requestids.RequestIdMiddleware",
    # /healthz, /readyz and /metrics: any Host, plain HTTP (config/health.py).
    "config.health.OpsEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a request body: files only where they are taken.
    "mailing.imports.uploads.UploadGuardMiddleware",
    # Outside the dashboard's poll (next), which answers most polls itself.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # A session the whole stack let through, unchanged since: its poll in
    # one query, before anything below reads the session (mailing.dashboard.poll).
    "mailing.dashboard.poll.DashboardPollMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.AccessGateMiddleware",
    "accounts.middleware.TenantMiddleware",
    # After the user and the tenant are known: their language (accounts.languages).
    "accounts.middleware.LanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "accounts.context_processors.tenancy",
            ],
            # {% translate %}, {% blocktranslate %}, |unlocalize and {{ moment|when }}
            # (every time shown, in the tenant's zone) in every template.
            "builtins": ["django.templatetags.i18n", "django.templatetags.l10n", "accounts.templatetags.when"],
        },
    },
]

# The services a production process needs named: left unset, the
# development stand-ins below (SQLite in VAR_DIR, the filesystem broker)
# would serve it silently, so with DEBUG off gunicorn, the workers and beat
# refuse to start (config/production.py); `manage.py` commands still run,
# `check --deploy` to say what is missing. The test settings name theirs.
UNSET_SERVICE_URLS = [] if DEBUG else [name for name in ("DATABASE_URL", "CELERY_BROKER_URL") if not env.str(name, "")]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one file: wait for locks
    # instead of failing, and let readers run beside a writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # A PostgreSQL that takes the connection and then says nothing (a host
    # half-down, a failover) is a failure after this many seconds, not a
    # wait without end: /readyz answers 503 and requests fail instead of
    # holding every web worker. A connect_timeout in DATABASE_URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
    )
    if DB_POOL_SIZE := env.int("DB_POOL_SIZE", default=0):
        # A process of many threads (the dispatch worker: one thread a SMTP
        # conversation) shares this many sessions: a thread holds one only
        # while it talks to the database, never across a SMTP round trip.
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # pooled sessions are kept by the pool
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_SIZE,
            "timeout": env.float("DB_POOL_TIMEOUT", default=30.0),
        }
        if env.bool("DB_PREPARED_STATEMENTS", default=True):
            # The dispatcher's statements (config.statements) are planned once a
            # session, after 5 runs. Only in this process: with a threshold psycopg
            # also counts every other query it runs, its text with its values
            # (a hundred of them a session), which a bulk import's would make
            # megabytes. Off behind a pooler that cannot keep prepared statements
            # (PgBouncer in transaction mode before 1.21).
            DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Database sessions that know their user, so that resetting two-factor
# login, new recovery codes or a new password end the user's other sessions
# (accounts.sessions).
SESSION_ENGINE = "accounts.sessions"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=2 * 3600)

# Onboarding and login protection.
EMAIL_VERIFICATION_MAX_AGE = env.int("EMAIL_VERIFICATION_MAX_AGE", default=3 * 24 * 3600)
INVITATION_MAX_AGE = env.int("INVITATION_MAX_AGE", default=7 * 24 * 3600)
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Number of reverse proxies in front of the app that append to
# X-Forwarded-For; 0 means REMOTE_ADDR is the client.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
# The platform's own letters (sign-up, verification resends, invitations,
# password resets) each kind counted within PLATFORM_MAIL_WINDOW seconds:
# at most PER_ADDRESS to one address, PER_USER caused by one signed-in
# user, PER_CLIENT from one client address (accounts.mail_limits).
PLATFORM_MAIL_WINDOW = env.int("PLATFORM_MAIL_WINDOW", default=3600)
PLATFORM_MAIL_PER_ADDRESS = env.int("PLATFORM_MAIL_PER_ADDRESS", default=3)
PLATFORM_MAIL_PER_USER = env.int("PLATFORM_MAIL_PER_USER", default=20)
PLATFORM_MAIL_PER_CLIENT = env.int("PLATFORM_MAIL_PER_CLIENT", default=20)
# Organisations one account may create (staff are exempt; staff may raise
# it per user in the admin).
MAX_ORGANISATIONS_PER_USER = env.int("MAX_ORGANISATIONS_PER_USER", default=3)
OTP_TOTP_ISSUER = "Postroute"
# Should a device admin ever be registered again (accounts/admin.py removes
# django-otp's), it shows no key, QR code or recovery code.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
RECOVERY_CODE_COUNT = 10

# The platform's own mail (verification, invitations, password reset).
# Development default: the local sink that `make run` starts.
vars().update(env.email_url("EMAIL_URL", default="smtp://127.0.0.1:1025" if DEBUG else "smtp://localhost:25"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Postroute <no-reply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# The interface languages (accounts.languages picks one per request); the
# catalogues in locale/ are compiled and committed (`make messages`).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский"), ("vi", "Tiếng Việt")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Where Django's own number and date formats need a correction (config/formats).
FORMAT_MODULE_PATH = ["config.formats"]
USE_THOUSAND_SEPARATOR = True
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Celery. The default broker needs no server: kombu's filesystem transport in
# var/broker. Production sets CELERY_BROKER_URL=redis://...
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env.str("CELERY_FILESYSTEM_DIR", default=str(VAR_DIR / "broker")))
    for _sub in ("queue", "control", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # Redis gives a task nobody acknowledged to another worker after this
    # many seconds: above the longest hard time limit (an import, 58 min),
    # or a running task would run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# One queue per kind of work, so that one kind cannot starve another: a long
# dispatch batch never delays a connection test, a platform email or a bounce
# read, nor an hour-long import the sending. Workers consume them as the
# README shows; `default` carries beat's housekeeping.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "mailing.tasks.send_mailing": {"queue": "dispatch"},
    "mailing.tasks.start_mailing": {"queue": "dispatch"},
    "servers.tasks.run_connection_test": {"queue": "probes"},
    "mailing.tasks.run_contact_import": {"queue": "imports"},
    "mailing.tasks.read_bounce_mailbox": {"queue": "bounces"},
    "accounts.tasks.purge_rate_counters": {"queue": "default"},
    "accounts.webhooks.tasks.*": {"queue": "webhooks"},
    "config.tasks.*": {"queue": "default"},
    "accounts.tasks.*": {"queue": "mail"},
}
# Every task has its own time limits, sized for its work (see each tasks.py);
# these catch one that has none. Soft: SoftTimeLimitExceeded inside the task,
# which leaves its state sane; hard: the worker process is killed. Every
# hard limit stays below Redis's visibility timeout (two hours, above), after which
# the broker would give a running task to a second worker.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360


def _every(task: str, seconds: float) -> dict:
    """A periodic task that expires when its next one is due: ticks that
    wait in a queue no worker serves never pile up into a burst."""
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


CELERY_BEAT_SCHEDULE = {
    "dispatch": _every("mailing.tasks.dispatch_tick", DISPATCH_TICK),
    "discard-stale-imports": _every("mailing.tasks.discard_stale_imports", 600.0),
    # Also rolls the buckets past the hour window up into quarters: a day
    # window is then at most 90 minutes of minute rows and the quarters
    # before them, per server and tenant.
    "purge-usage-buckets": _every("mailing.tasks.purge_usage_buckets", 900.0),
    "purge-rate-counters": _every("accounts.tasks.purge_rate_counters", 3600.0),
    "read-bounce-mailboxes": _every("mailing.tasks.read_bounce_mailboxes", float(BOUNCE_CHECK_INTERVAL)),
    "fail-stale-connection-tests": _every("servers.tasks.fail_stale_connection_tests", 60.0),
    "retention": _every("config.tasks.apply_retention", 3600.0),
    "deliver-webhooks": _every("accounts.webhooks.tasks.deliver_due_webhooks", 60.0),
}
# Beat sends only while it holds a lock in Redis, so a second beat on another
# host is a standby (config/heartbeats.py); it also marks its ticks for /readyz.
CELERY_BEAT_SCHEDULER = "config.heartbeats.LockingScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 15
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = TIME_ZONE

# Security. Behind a TLS-terminating proxy set BEHIND_PROXY=1, and
# NUM_PROXIES above (a deploy check refuses BEHIND_PROXY without it).
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Logs: LOG_FORMAT=json writes one JSON object a line (config/logs.py);
# Celery's workers and beat use the same configuration (config/celery.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = logs.config(json=LOG_FORMAT == "json", level=env.str("LOG_LEVEL", default="INFO"))
# The header a proxy puts its request id in (nginx: $request_id); without
# it each request gets a new id. The response carries it back.
REQUEST_ID_HEADER = env.str("REQUEST_ID_HEADER", default="X-Request-ID")

if SENTRY_DSN:
    from config import sentry

    sentry.init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
# A refused write (403) logs one line, not a traceback (config/logfilters.py).
LOGGING["filters"]["forbidden_one_line"] = {"()": "config.logfilters.ForbiddenOneLine"}
LOGGING["loggers"]["django.request"] = {"filters": ["forbidden_one_line"]}
