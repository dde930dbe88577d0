import os
import socket
import subprocess
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests run on, for another process."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def production_env(**extra: str) -> dict[str, str]:
    """A clean environment for running the product as production does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "EMAIL_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY="prod-like-" + "k9Zq3xP1" * 8,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ENV_FILE="",
    )
    env.update(extra)
    return env


# What a real installation sets, so that `check --deploy` passes (config/checks.py).
DEPLOY_SETTINGS = {
    "SITE_URL": "https://postroute.example.com",
    "ALLOWED_HOSTS": "postroute.example.com,127.0.0.1,localhost",
    "DATABASE_URL": "postgres://postroute:secret@db.example.com:5432/postroute",
    "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
    "SECRETS_ENCRYPTION_KEYS": "bWFkZS11cC1mZXJuZXQta2V5LWZvci10ZXN0cy0wMDA=",
    "DEFAULT_FROM_EMAIL": "Postroute <no-reply@example.com>",
}


def deploy_env(**extra: str) -> dict[str, str]:
    """production_env with every value `check --deploy` asks for."""
    return production_env(**{**DEPLOY_SETTINGS, **extra})


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# Addresses on special-use names a self-hosted company mails and a hosted
# platform refuses (servers.addresses).
SPECIAL_USE_ADDRESSES = ["ivan@corp.local", "a@b.test", "x@y.internal"]


def deployment_mode(settings: object, mode: str) -> None:
    """Run as `mode` ("saas" or "self_hosted") with that mode's default for
    special-use names, and without the suite's own allowance for .test."""
    settings.DEPLOYMENT_MODE = mode
    settings.ALLOW_SPECIAL_USE_DOMAINS = mode == "self_hosted"
    settings.ALLOW_TEST_DOMAIN = False
