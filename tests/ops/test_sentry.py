"""With SENTRY_DSN set, an error reaches Sentry (here a local HTTP server
standing in for it) without the SMTP password or the letter's body that
were at hand, in the request or in local variables."""

import gzip
import http.server
import subprocess
import sys
import threading
import zlib

import pytest

from config.sentry import FILTERED, before_send
from tests.helpers import ROOT, production_env

PASSWORD = "smtp-pass-Zq81x"
BODY = "Dear customer, your secret offer"

SCRIPT = f"""
import django, sentry_sdk
django.setup()
from django.test import Client
from config import requestids

def send_with(smtp_password, text_body):
    raise RuntimeError("the server hung up")

with requestids.bound(request_id="rid-sentry"):
    sentry_sdk.set_extra("server_password", {PASSWORD!r})
    sentry_sdk.set_context("letter", {{"html_body": {BODY!r}, "subject": "x"}})
    try:
        send_with({PASSWORD!r}, {BODY!r})
    except RuntimeError:
        sentry_sdk.capture_exception()
sentry_sdk.flush(5)
"""


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        Receiver.received.append(raw)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_sentry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    yield f"http://publickey@127.0.0.1:{server.server_port}/1"
    server.shutdown()


def test_an_error_reaches_sentry_without_passwords_or_bodies(fake_sentry):
    env = production_env(SENTRY_DSN=fake_sentry)
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    payload = b"".join(Receiver.received)
    assert b"the server hung up" in payload and b"RuntimeError" in payload
    assert b"rid-sentry" in payload  # the request id, as a tag
    assert PASSWORD.encode() not in payload and BODY.encode() not in payload


def test_before_send_blanks_sensitive_keys_and_request_bodies():
    event = {
        "request": {"data": {"text_body": BODY}, "cookies": {"sessionid": "s"}, "headers": {"Authorization": "x"}},
        "extra": {"nested": [{"password": PASSWORD, "host": "smtp.example.com"}]},
        "exception": {"values": [{"stacktrace": {"frames": [{"function": "f", "vars": {"pw": PASSWORD}}]}}]},
    }
    cleaned = before_send(event, {})
    assert "data" not in cleaned["request"] and cleaned["request"]["cookies"] == FILTERED
    assert cleaned["request"]["headers"]["Authorization"] == FILTERED
    assert cleaned["extra"]["nested"] == [{"password": FILTERED, "host": "smtp.example.com"}]
    assert "vars" not in cleaned["exception"]["values"][0]["stacktrace"]["frames"][0]


ADDRESS_SCRIPT = """
import logging, django, sentry_sdk
django.setup()
from django.db import IntegrityError, connection

with connection.cursor() as cursor:
    cursor.execute("CREATE TEMP TABLE contact (email text UNIQUE)")
    cursor.execute("INSERT INTO contact VALUES ('ivan.petrov@example.com')")
    try:
        cursor.execute("INSERT INTO contact VALUES ('ivan.petrov@example.com')")
    except IntegrityError:
        sentry_sdk.capture_exception()
logging.getLogger("mailing").error("The letter to %s failed", "иван@пример.рф")
sentry_sdk.flush(5)
"""


@pytest.mark.django_db
def test_an_error_reaches_sentry_without_the_addresses_it_names(fake_sentry):
    """PostgreSQL names the duplicate address in a unique violation's detail,
    a log line names a recipient: the error and the line go to Sentry, the
    addresses (personal data of the tenants' contacts) do not."""
    from tests.helpers import database_url

    env = production_env(SENTRY_DSN=fake_sentry, DATABASE_URL=database_url())
    result = subprocess.run([sys.executable, "-c", ADDRESS_SCRIPT], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    payload = b"".join(Receiver.received).decode("utf-8", "replace")
    assert "UniqueViolation" in payload or "IntegrityError" in payload
    assert "The letter to" in payload
    assert "ivan.petrov" not in payload and "example.com" not in payload
    assert "иван" not in payload and "\\u0438\\u0432\\u0430\\u043d" not in payload
