"""Finding the real services the suite talks to. Without them a test skips
with the reason; with REQUIRE_SERVICES=1 the same absence is a failure."""

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

REQUIRED = os.environ.get("REQUIRE_SERVICES", "") not in ("", "0", "false", "no")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


def require(name: str, available: bool, how: str) -> None:
    if available:
        return
    message = f"{name} is not available ({how})"
    if REQUIRED:
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(message)


def port_open(url: str, default_port: int) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_postgresql() -> None:
    from django.db import connection

    require("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")


def require_redis() -> str:
    require("Redis", port_open(REDIS_URL, 6379), f"nothing answers at {REDIS_URL}")
    return REDIS_URL


def require_chromium() -> str:
    require("Chromium", os.path.exists(CHROMIUM), f"no browser at {CHROMIUM}; apt-get install chromium")
    return CHROMIUM


def other_session():
    """A second PostgreSQL session on the test database, in autocommit: it
    holds advisory locks (a connection slot taken by another worker) while
    the test's own session runs the dispatcher. Close it (or use it as a
    context manager) to free what it holds."""
    import psycopg
    from django.db import connection

    s = connection.settings_dict
    session = psycopg.connect(host=s["HOST"] or None, port=s["PORT"] or None, user=s["USER"], dbname=s["NAME"])
    session.autocommit = True
    return session


def hold_slots(server, slots: int = 1):
    """Another session taking the first `slots` connection slots of `server`
    (mailing.dispatch.batch.connection_slot)."""
    session = other_session()
    for slot in range(slots):
        session.execute("SELECT pg_advisory_lock(%s)", [server.pk * 64 + slot])
    return session
