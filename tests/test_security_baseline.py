"""The security baseline of issue #2, checked on the running product."""

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client

from tests.helpers import ROOT, deploy_env, free_port, manage, production_env


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=deploy_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_hashes_passwords_with_a_slow_salted_hash():
    code = "from django.conf import settings; print(settings.PASSWORD_HASHERS[0])"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() in {
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
    }


@pytest.mark.django_db
def test_pages_carry_csp_and_frame_denial_and_no_traceback():
    response = Client().get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert b"<script>" not in response.content  # no inline script
    missing = Client().get("/no/such/page/")
    assert missing.status_code == 404
    assert b"Traceback" not in missing.content and b"Django" not in missing.content
    assert b"Page not found" in missing.content


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """The product as production runs it: collected static files, gunicorn."""
    static_root = tmp_path_factory.mktemp("static")
    env = production_env(
        STATIC_ROOT=str(static_root),
        SECURE_SSL_REDIRECT="0",
        SECURE_COOKIES="0",
        DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('db') / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",  # no worker: what the web queues waits in a folder
    )
    assert manage("collectstatic", "--noinput", env=env).returncode == 0
    assert manage("migrate", "--noinput", env=env).returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(10)


def fetch(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.parametrize(
    "path, status",
    [
        ("/accounts/login/", 200),
        ("/no/such/page/", 404),
        ("/static/", 404),
        ("/static/css/", 404),
        ("/static/css/app.css", 200),
        ("/accounts/verify/garbage/", 400),
    ],
)
def test_no_response_reveals_software_versions_or_listings(gunicorn, path, status):
    code, headers, body = fetch(gunicorn + path)
    assert code == status
    server = headers.get("Server", "")
    assert not re.search(r"\d", server), f"Server header reveals a version: {server}"
    assert not any(k.lower() == "x-powered-by" for k in headers)
    assert b"Traceback" not in body and b"Index of" not in body
