"""Explicit test settings: fast hasher, local memory cache and outbox,
SQLite in a file unless DATABASE_URL names another database, and nothing
written in the checkout."""

import hashlib
import os
import tempfile
from pathlib import Path

os.environ["ENV_FILE"] = ""  # a developer's .env must not change the tests
# What the suite writes (the SQLite files, the filesystem broker, heartbeats,
# collected static files) goes in a folder outside the checkout, one per
# checkout; the workers and servers the tests start inherit it.
os.environ.setdefault(
    "VAR_DIR",
    str(
        Path(tempfile.gettempdir())
        / f"postroute-tests-{hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:12]}"
    ),
)
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 48)
os.environ.setdefault("DEBUG", "0")

from .settings import *  # noqa: F403
from .settings import VAR_DIR, env

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'test.sqlite3'}")}
UNSET_SERVICE_URLS: list[str] = []  # the database and the broker above are chosen on purpose
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a real Celery worker in a subprocess can
    # open the same test database.
    DATABASES["default"]["TEST"]["NAME"] = str(DATABASES["default"]["NAME"]).removesuffix(".sqlite3") + "-test.sqlite3"
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
CELERY_TASK_ALWAYS_EAGER = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
STATIC_ROOT = VAR_DIR / "test-static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Tests talk to SMTP and IMAP servers on 127.0.0.1; the SSRF tests turn
# this off again where they check the guard.
SERVERS_ALLOW_PRIVATE_HOSTS = True
# The suite's addresses are on .test (x@acme.test) in SaaS mode too; the
# tests of special-use names turn this off where they check .test itself.
ALLOW_TEST_DOMAIN = True
SERVER_PROBE_TIMEOUT = 3.0
# No DNS from the suite: the deliverability tests start their own server.
DNS_RESOLVER = "off"
# The test's own transaction holds the data: a writer thread on another
# connection could not see it. Real-worker tests run the threaded path.
DISPATCH_RECORD_THREAD = False

# Tests read log records through pytest's caplog; the console stays quiet
# (a refused CSRF check or a failing probe logs a warning by design).
LOGGING["handlers"]["console"]["level"] = "ERROR"  # noqa: F405
