"""The production process set, from deploy/'s systemd command lines run
directly (no systemd here): the release steps (check --deploy must pass),
gunicorn, the three worker groups and beat, on PostgreSQL and Redis with
DEBUG=0. Through HTTP, as nginx would pass it on (X-Forwarded-Proto https):
sign up, verify from the letter the worker sent, enrol, add a server that
points at a sink, import contacts, make a template and a mailing, start it;
the letters arrive, /readyz is green and /metrics counts them."""

import http.cookies
import json
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from mailing.models import ContactImport, Letter
from mailing.sink import MailSink
from tests.accounts.helpers import code_for
from tests.helpers import ROOT, database_url, free_port, manage, production_env
from tests.services import require_postgresql

from .test_deploy_recipe import INSTALL, environment, exec_starts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HOST = "postroute.example.com"
PASSWORD = "correct horse battery staple 42"
TOKEN = "scrape-" + uuid.uuid4().hex
RECIPIENTS = [f"reader{i}@customers.test" for i in range(6)]


class Browser:
    """A client that talks to gunicorn as nginx does, keeping its cookies
    (secure ones included: the proxy's side of the connection is TLS)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}
        self.opener = urllib.request.build_opener(NoRedirect)

    def request(self, path: str, data: dict | None = None, files: dict | None = None) -> tuple[int, str, str]:
        headers = {
            "Host": HOST,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
            "Referer": f"https://{HOST}{path}",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }
        body = None
        if data is not None or files is not None:
            fields = {**(data or {}), "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            body, headers["Content-Type"] = encode(fields, files or {})
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST" if body else "GET")
        try:
            response = self.opener.open(req, timeout=30)
        except urllib.error.HTTPError as exc:
            response = exc
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in http.cookies.SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        location = response.headers.get("Location", "")
        return response.status, response.read().decode(), location


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object) -> None:
        return None


def encode(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{item}\r\n'.encode())
    for name, (filename, content) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def choices(page: str, field: str) -> list[str]:
    """The values offered for a form field (a select's options or checkboxes)."""
    select = re.search(rf'<select[^>]*name="{field}".*?</select>', page, re.S)
    if select:
        return [v for v in re.findall(r'<option value="([^"]+)"', select.group(0)) if v]
    return re.findall(rf'<input[^>]*name="{field}"[^>]*value="([^"]+)"', page)


def wait_for(condition, seconds: float, what: str, procs: dict) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        dead = [name for name, p in procs.items() if p.poll() is not None]
        assert not dead, f"{dead} stopped while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def platform(tmp_path, redis_broker):
    """Every process of deploy/systemd, started as its unit would start it."""
    require_postgresql()
    port = free_port()
    sink = MailSink().start()
    env = production_env(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=redis_url(redis_broker),
        SITE_URL=f"https://{HOST}",
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        SECRETS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DEFAULT_FROM_EMAIL="Postroute <no-reply@example.com>",
        EMAIL_URL=f"smtp://127.0.0.1:{sink.port}",
        DEPLOYMENT_MODE="self_hosted",
        BEHIND_PROXY="1",
        NUM_PROXIES="1",
        LOG_FORMAT="json",
        METRICS_TOKEN=TOKEN,
        STATIC_ROOT=str(tmp_path / "static"),
        IMPORTS_DIR=str(tmp_path / "imports"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        DISPATCH_TICK="1",
    )
    (tmp_path / "metrics").mkdir()
    release = (ROOT / "deploy" / "systemd" / "postroute-release.service").read_text()
    steps = [shlex.split(line) for line in re.findall(r"^ExecStart=(.*)$", release, re.M)]
    assert [step[2] for step in steps] == ["check", "migrate", "collectstatic"]
    for step in steps:
        result = manage(*step[2:], env=env)  # after ".../python manage.py"
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    procs = {}
    for name, command in exec_starts().items():
        words = [w.replace("%H", "smoke") for w in shlex.split(command)]
        words[0] = str(ROOT / ".venv" / "bin" / words[0])
        if "--concurrency" in words:  # the machine running the suite has two cores
            words[words.index("--concurrency") + 1] = "1"
        words = [w.replace(f"{INSTALL}/var", str(tmp_path)) for w in words]
        log = (tmp_path / f"{name}.log").open("w")
        own = {k: v for k, v in environment(name).items() if k not in env}  # the test's folders and port win
        procs[name] = subprocess.Popen(words, cwd=ROOT, env=env | own, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Browser(port), sink, procs, tmp_path
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink.stop()


def redis_url(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def test_a_production_install_signs_up_imports_and_sends(platform):
    browser, sink, procs, tmp_path = platform
    wait_for(lambda: ready(browser)[0] == 200, 60, "/readyz", procs)

    # Sign up and verify with the link the `mail` worker delivered.
    status, _, _ = browser.request("/accounts/signup/")
    assert status == 200
    data = {"email": "ops@smoke.test", "full_name": "Ops", "organisation": "Smoke Ltd", "password": PASSWORD}
    status, page, location = browser.request("/accounts/signup/", data)
    assert status == 302, page[:2000]
    wait_for(lambda: sink.received, 30, "the verification letter", procs)
    link = re.search(rf"https://{re.escape(HOST)}(/accounts/verify/\S+)", letter_text(sink.received[0].message))
    assert browser.request(link.group(1))[0] == 302
    login = {"email": data["email"], "password": PASSWORD}
    assert browser.request("/accounts/login/", login)[0] == 302  # a sign-up signs nobody in

    # Enrol the authenticator app.
    status, page, _ = browser.request("/accounts/two-factor/setup/")
    secret = re.search(r'class="secret-key">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    assert browser.request("/accounts/two-factor/setup/", {"token": code_for(secret)})[0] == 302

    # A server that points at the sink, contacts from a file, a template.
    server = {"name": "Sink", "kind": "external", "sender_email": "news@smoke.test", "sender_name": "Smoke"}
    server |= {"host": "127.0.0.1", "port": sink.port, "security": "none", "login": "", "password": "", "enabled": "on"}
    status, page, _ = browser.request("/servers/add/", server)
    assert status == 302, re.findall(r'class="errorlist[^"]*">(.*?)</ul>', page, re.S)
    csv = ("email,first_name\n" + "".join(f"{e},Reader{i}\n" for i, e in enumerate(RECIPIENTS))).encode()
    status, _, location = browser.request("/contacts/imports/new/", {}, files={"file": ("readers.csv", csv)})
    assert status == 302, location
    mapping = {"col_0": "email", "col_1": "first_name", "contact_list": "", "new_list_name": "Readers"}
    assert browser.request(location, mapping)[0] == 302
    done = ContactImport.Status.DONE
    wait_for(lambda: ContactImport.objects.filter(status=done, created=len(RECIPIENTS)).exists(), 60, "import", procs)
    template = {"name": "News", "subject": "Hello {{ first_name }}", "text_body": "Hi {{ first_name }}"}
    template |= {"html_body": "", "sender_email": "", "sender_name": "", "reply_to": ""}
    status, page, _ = browser.request("/templates/add/", template)
    assert status == 302, page[:2000]

    # The mailing, started through the page; the dispatch worker sends it.
    _, page, _ = browser.request("/mailings/new/")
    mailing = {"name": "Smoke news", "template": choices(page, "template")[0], "lists": choices(page, "lists")}
    mailing |= {"servers": choices(page, "servers"), "scheduled_at": ""}
    status, page, location = browser.request("/mailings/new/", mailing)
    assert status == 302, page[:3000]
    assert browser.request(location + "start/", {})[0] == 302
    sent = Letter.Status.SENT
    wait_for(lambda: Letter.objects.filter(status=sent).count() == len(RECIPIENTS), 90, "the letters", procs)
    delivered = {r.rcpt_tos[0] for r in sink.received if r.rcpt_tos[0] in RECIPIENTS}
    assert delivered == set(RECIPIENTS)

    status, body = ready(browser)
    assert status == 200 and body["status"] == "ok", body
    assert letters_counted(browser) == len(RECIPIENTS)
    user = User.objects.get(email="ops@smoke.test")
    assert user.is_email_verified
    for name in procs:  # every line of every process is one JSON object
        lines = [line for line in Path(tmp_path / f"{name}.log").read_text().splitlines() if line.strip()]
        assert lines and all(json.loads(line) for line in lines), name


def letter_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def ready(browser: Browser) -> tuple[int, dict]:
    try:
        status, body, _ = browser.request("/readyz")
    except OSError:
        return 0, {}
    return status, json.loads(body) if body.startswith("{") else {}


def letters_counted(browser: Browser) -> float:
    req = urllib.request.Request(browser.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "postroute_letters_total" and sample.labels.get("result") == "sent":
                total += sample.value
    return total
