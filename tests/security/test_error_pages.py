"""Error pages reveal nothing about the machine (DOMAIN.md §8): with DEBUG
off, the 400 (a bad Host header, too many fields), 403 (a member's write,
a CSRF failure), 404, 405 and 500 (a view that raises) answers carry no
traceback, no software name or version and no path of the machine, in their
bodies or their headers. Then the product as production runs it (gunicorn
with config/gunicorn.conf.py, whitenoise, collected static files): no
`Server` header names gunicorn, static directories are not listed, and
gunicorn's own page for a malformed request says nothing more.

test_security_baseline.py already proves `check --deploy` is clean, the
login page's CSP and frame denial, and, on gunicorn without its config,
the status of the static directories and that no header holds a digit."""

import platform
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import django
import gunicorn
import pytest
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path, reverse

from config import urls as product_urls
from tests.helpers import ROOT, database_url, free_port, manage, production_env

# All in the database group, so pytest-django keeps the module's tests together.
pytestmark = pytest.mark.django_db

# Words and strings no answer may contain, in any case.
SOFTWARE = ["traceback", 'file "', '.py"', "django", "python/", "cpython", "gunicorn", "wsgiserver", "whitenoise"]
VERSIONS = [django.get_version(), platform.python_version(), gunicorn.__version__, version("whitenoise")]
PATHS = ["/work/", "/root/", "/home/", "site-packages", str(ROOT), sys.prefix]

checked: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(f"\nerror pages: {len(checked)} responses checked, 0 tracebacks, 0 versions, 0 listings")


def reveals(text: str) -> list[str]:
    lowered = text.lower()
    found = [word for word in SOFTWARE if word in lowered]
    found += [v for v in VERSIONS if re.search(rf"(?<![\d.]){re.escape(v)}(?![\d.])", text)]
    return found + [p for p in PATHS if p.lower() in lowered]


def assert_reveals_nothing(what: str, status: int, headers: dict[str, str], body: bytes) -> None:
    text = "\n".join(f"{k}: {v}" for k, v in headers.items()) + "\n\n" + body.decode("utf-8", "replace")
    assert not reveals(text), f"{what} ({status}) reveals {reveals(text)}"
    assert not any(k.lower() in ("server", "x-powered-by") for k in headers), f"{what}: {headers}"
    assert "Index of" not in text and "Directory listing" not in text, what
    checked.append(what)


def check(what: str, response, status: int) -> None:
    assert response.status_code == status, (what, response.status_code)
    headers = dict(response.items())
    headers.update({f"Set-Cookie ({name})": c.OutputString() for name, c in response.cookies.items()})
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert_reveals_nothing(what, status, headers, body)


# ---------- In the process: Django's own error handling ----------


@login_not_required
def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(f"broken on purpose in {Path(__file__).resolve()}: Traceback, Django {django.get_version()}")


urlpatterns = [path("explode/", explode), *product_urls.urlpatterns]


def test_debug_is_off():
    assert settings.DEBUG is False


@override_settings(ROOT_URLCONF=__name__)
def test_a_500_shows_the_plain_page_and_nothing_of_the_error():
    response = Client(raise_request_exception=False).get("/explode/")
    check("500 of a view that raises", response, 500)
    assert b"Something went wrong on our side." in response.content
    assert b"broken on purpose" not in response.content


def test_404_400_403_and_405_pages_reveal_nothing(alice, bob, charlie):
    anonymous = Client()
    check("404 of an unknown page", anonymous.get("/no/such/page/"), 404)
    check("404 of an unknown page, logged in", alice.client.get("/no/such/page/"), 404)
    check("404 of a static directory", anonymous.get("/static/"), 404)
    check("404 of a static sub-directory", anonymous.get("/static/css/"), 404)
    check("404 of a server of another tenant", charlie.client.get(reverse("servers:list") + f"{'0' * 32}/"), 404)
    check("400 of a bad Host header", anonymous.get("/accounts/login/", headers={"host": "evil.example"}), 400)
    fields = {f"f{n}": "x" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    check("400 of too many fields", anonymous.post("/accounts/login/", fields), 400)
    check("400 of a bad link", anonymous.get("/accounts/verify/garbage/"), 400)
    check("403 of a member's write", bob.client.post(reverse("servers:add"), {"name": "x"}), 403)
    forged = Client(enforce_csrf_checks=True).post("/accounts/login/", {"email": "a@b.test", "password": "x"})
    check("403 of a CSRF failure", forged, 403)
    check("405 of a GET on a POST-only view", alice.client.get(reverse("accounts:verify_resend")), 405)


# ---------- gunicorn as production runs it ----------


@pytest.fixture(scope="module")
def production(django_db_setup, tmp_path_factory) -> Iterator[str]:
    """gunicorn with config/gunicorn.conf.py (as the Procfile and README
    start it) on the migrated test database, with collected static files."""
    static_root = tmp_path_factory.mktemp("static")
    port = free_port()
    env = production_env(
        STATIC_ROOT=str(static_root),
        SECURE_SSL_REDIRECT="0",
        SECURE_COOKIES="0",
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL="filesystem://",  # no worker: what the web queues waits in a folder
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
    )
    result = manage("collectstatic", "--noinput", env=env)
    assert result.returncode == 0, result.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, "gunicorn exited"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def hashed_static_file(base: str) -> str:
    """The versioned name the manifest gives app.css, from a page's link."""
    _, _, body = fetch(base + "/accounts/login/")
    return re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body).group(1).decode()


def test_gunicorn_answers_reveal_no_software_and_list_no_directory(production):
    answers = [
        ("/accounts/login/", "GET", {}, 200),
        ("/no/such/page/", "GET", {}, 404),
        ("/static/", "GET", {}, 404),
        ("/static/css/", "GET", {}, 404),
        ("/static/admin/", "GET", {}, 404),
        ("/static/css/app.css", "GET", {}, 200),
        (hashed_static_file(production), "GET", {}, 200),
        ("/accounts/verify/garbage/", "GET", {}, 400),
        ("/accounts/login/", "GET", {"Host": "evil.example"}, 400),
        ("/accounts/login/", "POST", {}, 403),  # no CSRF token
        ("/healthz", "GET", {}, 200),
    ]
    for url, method, headers, status in answers:
        code, got, body = fetch(production + url, method, headers)
        assert code == status, (url, code)
        assert_reveals_nothing(f"gunicorn {method} {url}", code, got, body)


def test_gunicorns_own_error_page_reveals_nothing(production):
    """A request gunicorn cannot parse never reaches Django: gunicorn
    answers it with its own short page."""
    host, port = production.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"NOT A REQUEST\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status == 400
    headers = dict(line.split(": ", 1) for line in head.decode("latin1").split("\r\n")[1:])
    assert_reveals_nothing("gunicorn's own 400 page", status, headers, body)
