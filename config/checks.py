"""Deploy checks (`manage.py check --deploy`): settings that are fine on a
developer's machine and wrong on a platform that mails for many tenants.
Each is an Error, so `check --deploy` fails on it."""

from collections.abc import Sequence
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.http.request import validate_host

METRICS_TOKEN_MIN_LENGTH = 32
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}  # noqa: S104 - names compared, nothing bound


def _is_local(host: str) -> bool:
    host = host.lower().strip("[]")
    return host in LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def _not_fernet_keys(keys: Sequence[str]) -> list[int]:
    """The 1-based positions of the keys Fernet refuses (never the keys)."""
    from cryptography.fernet import Fernet

    bad = []
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            bad.append(number)
    return bad


@register(Tags.security, deploy=True)
def production_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: object) -> list[CheckMessage]:
    errors: list[CheckMessage] = []

    def refuse(condition: bool, msg: str, hint: str, number: int) -> None:
        if condition:
            errors.append(Error(msg, hint=hint, id=f"ops.E{number:03d}"))

    refuse(
        _is_local(urlsplit(settings.SITE_URL).hostname or ""),
        f"SITE_URL is {settings.SITE_URL!r}: every unsubscribe and verification link would point at the server itself.",
        "Set SITE_URL to the public address, e.g. https://postroute.example.com.",
        1,
    )
    refuse(
        settings.CELERY_BROKER_URL.startswith(("filesystem://", "memory://")),
        "CELERY_BROKER_URL is the development broker (a folder on this host): workers on other hosts never see it.",
        "Set CELERY_BROKER_URL=redis://host:6379/0.",
        2,
    )
    refuse(
        settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
        "DATABASE_URL is SQLite: one file, one writer at a time, on one host.",
        "Set DATABASE_URL=postgres://user:password@host:5432/postroute.",
        3,
    )
    refuse(
        not settings.SECRETS_ENCRYPTION_KEYS,
        "SECRETS_ENCRYPTION_KEYS is not set: tenants' SMTP and IMAP passwords are encrypted with a key derived from "
        "SECRET_KEY, which is for development (rotating SECRET_KEY would lose them).",
        "Generate one with `python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'` and keep it apart from the database backups.",
        4,
    )
    site_host = urlsplit(settings.SITE_URL).hostname or ""
    refuse(
        bool(site_host) and not validate_host(site_host, settings.ALLOWED_HOSTS),
        f"SITE_URL's host {site_host!r} is not in ALLOWED_HOSTS: every unsubscribe, verification and reset link "
        "in letters would be answered with 400.",
        f"Add {site_host} to ALLOWED_HOSTS.",
        9,
    )
    bad_keys = _not_fernet_keys(settings.SECRETS_ENCRYPTION_KEYS)
    refuse(
        bool(bad_keys),
        f"SECRETS_ENCRYPTION_KEYS: key number {', '.join(map(str, bad_keys))} is not a Fernet key (32 bytes in "
        "URL-safe base64): the first password a tenant saves would fail.",
        "Generate one with `python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'`.",
        7,
    )
    token = settings.METRICS_TOKEN
    refuse(
        bool(token) and (len(token) < METRICS_TOKEN_MIN_LENGTH or "change-me" in token.lower()),
        "METRICS_TOKEN is a placeholder or shorter than 32 characters: anyone who guesses it reads the metrics.",
        "Generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or leave it empty.",
        8,
    )
    refuse(
        _is_local(settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(" >").lower()),
        f"DEFAULT_FROM_EMAIL is {settings.DEFAULT_FROM_EMAIL!r}: verification letters from a local domain are refused "
        "or marked as spam.",
        "Set DEFAULT_FROM_EMAIL to an address of the platform's domain, e.g. Postroute <no-reply@example.com>.",
        5,
    )
    refuse(
        settings.SERVERS_ALLOW_PRIVATE_HOSTS and settings.DEPLOYMENT_MODE == "saas",
        "SERVERS_ALLOW_PRIVATE_HOSTS is on in SaaS mode: tenants could point a sending server at the platform's own "
        "network.",
        "Unset SERVERS_ALLOW_PRIVATE_HOSTS (it is for development and tests).",
        6,
    )
    return errors
