"""The SSRF guard and the SaaS port-25 rule hold at every entry point, with
the guard switched on as in SaaS production (the suite otherwise allows
private hosts for its local test servers).

Each internal spelling of the netguard matrix (tests/servers/test_netguard.py
REFUSED, minus the names that would need DNS), port 25 on a public address
and an Internal SMTP server are tried through:

1. the tenant's SMTP server form (add and edit) and bounce mailbox form
   (IMAP and POP3, add and edit): refused next to the field, nothing stored;
2. the staff admin (add and change, servers and mailboxes): refused, nothing stored
   (every spelling through the admin's form class, one of each kind of
   address through its pages);
3. the connection test of a record stored legitimately and then edited in the
   database behind clean()'s back (server and mailbox);
4. the dispatcher, with that server as the only one of an active mailing:
   the server fails naming the rule, the letters stay queued, the mailing waits;
5. the bounce reader, with the mailbox edited the same way;
6. the tenant's edit form of such an edited record, saved as it shows it:
   refused next to the field, the record unchanged (every spelling through
   the form class, one of each kind through the pages); a record with a rule
   the SaaS form has no field for, Internal SMTP or unverified TLS, is set
   right by saving rather than crashing the page.

"Never connects" is proven by a real listener on 127.0.0.1 and ::1 that
counts accepted connections (every edited record points at its port), and
by a spy on socket connect() that lets through only loopback addresses and
counts every attempt. DNS is never asked: a name that is not an IP literal
fails the lookup and is recorded.
"""

import html
import ipaddress
import logging
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.urls import reverse

from mailing import dispatch, tasks
from mailing.models import Letter, Mailing
from servers.forms import BounceMailboxForm, SmtpServerForm
from servers.models import BounceMailbox, ConnectionTest, Health, SmtpServer
from servers.netguard import guard_enabled
from servers.rules import INTERNAL_REFUSED, PORT_25_REFUSED
from tests.mailing.test_dispatch import start_mailing
from tests.servers.test_mailbox_views import DATA as MAILBOX_FORM
from tests.servers.test_netguard import FAKE_DNS, REFUSED
from tests.servers.test_rules import FORM as SERVER_FORM

pytestmark = pytest.mark.django_db

GUARD_TEXT = "hosted accounts may not use"  # in every netguard refusal
# The matrix's internal spellings that resolve without DNS (IP literals in
# every notation, *.localhost). netguard has no resolver hook, so the names
# of FAKE_DNS are left to its own unit tests.
HOSTS: list[str] = [host for host, _reason in REFUSED if host not in FAKE_DNS]
PUBLIC = "8.8.8.8"  # stored legitimately; never connected to


@dataclass(frozen=True)
class Case:
    label: str
    field: str  # the field the refusal belongs to
    text: str  # a piece of the refusal
    host: str = ""
    port: int | None = None  # None: the listener's port (edited records), 465 (forms)
    kind: str = SmtpServer.Kind.EXTERNAL


HOST_CASES = [Case(host, "host", GUARD_TEXT, host=host) for host in HOSTS]
PORT_25 = Case(f"{PUBLIC}:25", "port", str(PORT_25_REFUSED), host=PUBLIC, port=25)
INTERNAL = Case("internal SMTP", "kind", str(INTERNAL_REFUSED), kind=SmtpServer.Kind.INTERNAL)
SERVER_CASES = [*HOST_CASES, PORT_25]  # what a tenant's form can express
ALL_SERVER_CASES = [*SERVER_CASES, INTERNAL]  # the admin and edited records can also say "internal"
# The first spelling of each kind of address (loopback, private,
# link-local, ...): the admin's pages are tried with these, every spelling
# going through the admin's own form class, which is what those pages bind.


def first_of_each_kind() -> list[Case]:
    reasons = dict(REFUSED)
    kinds: dict[str, Case] = {}
    for case in HOST_CASES:
        kinds.setdefault(reasons[case.host], case)
    return list(kinds.values())


KIND_CASES = first_of_each_kind()

TALLY: dict[str, Counter] = {"attempts": Counter(), "stored": Counter(), "connections": Counter()}


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    attempts = TALLY["attempts"]
    print(
        f"\nssrf: {sum(attempts.values())} attempts across {len(attempts)} entry points, "
        f"{sum(TALLY['stored'].values())} stored, {sum(TALLY['connections'].values())} connections"
    )


# --- the guard, a listener, a connect spy, no DNS -------------------------------


@pytest.fixture(autouse=True)
def quiet(caplog) -> None:
    """Every refusal is logged with its traceback; hundreds of them hide the result."""
    for name in ("mailing", "servers", "celery", "kombu", "django.request"):
        caplog.set_level(logging.CRITICAL, logger=name)


@pytest.fixture(autouse=True)
def saas(settings) -> None:
    settings.DEPLOYMENT_MODE = "saas"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    settings.CONNECTION_TESTS_PER_MINUTE = 10_000  # the throttle is not under test here
    assert guard_enabled()


class Listener:
    """Real listening sockets on 127.0.0.1 and ::1 (one port) that accept,
    count and close every connection."""

    def __init__(self) -> None:
        self.accepted: list[tuple] = []
        self.sockets = [socket.create_server(("127.0.0.1", 0))]
        self.port: int = self.sockets[0].getsockname()[1]
        with suppress(OSError):  # no IPv6 loopback here: the connect spy still sees ::1
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        for sock in self.sockets:
            sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self.sockets]
        for thread in self.threads:
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(peer)
            conn.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        for sock in self.sockets:
            sock.close()


@dataclass
class Net:
    listener: Listener
    connects: list[tuple] = field(default_factory=list)  # every connect() attempt
    lookups: list[str] = field(default_factory=list)  # names that would have needed DNS

    @property
    def connections(self) -> int:
        # A connection to the listener is also a connect() call: count it once.
        return max(len(self.listener.accepted), len(self.connects))


def _is_ip_literal(name: object) -> bool:
    if not isinstance(name, str):
        return False
    try:
        socket.inet_aton(name)  # 127.1, 0x7f.1, 2130706433, 0177.0.0.1 ...
    except OSError:
        try:
            socket.inet_pton(socket.AF_INET6, name)
        except OSError:
            return False
    return True


@pytest.fixture(autouse=True)
def net() -> Iterator[Net]:
    listener = Listener()
    state = Net(listener)
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def allowed(address: object) -> bool:
        host = address[0] if isinstance(address, tuple) else ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def connect(sock: socket.socket, address: object) -> None:
        state.connects.append(address)
        if not allowed(address):
            raise ConnectionRefusedError(f"this test has no outside network ({address})")
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        state.connects.append(address)
        return real_connect_ex(sock, address) if allowed(address) else 111

    def getaddrinfo(host, *args, **kwargs):
        if not _is_ip_literal(host):
            state.lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"no DNS in this test ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(socket.socket, "connect", connect)
            patch.setattr(socket.socket, "connect_ex", connect_ex)
            patch.setattr(socket, "getaddrinfo", getaddrinfo)
            yield state
    finally:
        listener.close()


class Attempts:
    """Counts attempts at one entry point and collects every failure, so one
    run shows all the holes rather than the first."""

    def __init__(self, entry_point: str, net: Net) -> None:
        self.entry_point, self.net = entry_point, net
        self.problems: list[str] = []

    def attempt(self) -> None:
        TALLY["attempts"][self.entry_point] += 1

    def check(self, ok: bool, case: Case | str, what: str) -> None:
        if not ok:
            label = case.label if isinstance(case, Case) else case
            self.problems.append(f"{self.entry_point} [{label!r}]: {what}")

    def stored(self, count: int) -> None:
        TALLY["stored"][self.entry_point] += count
        self.check(count == 0, "-", f"{count} record(s) stored or changed")

    def done(self) -> None:
        TALLY["connections"][self.entry_point] += self.net.connections
        self.check(self.net.listener.accepted == [], "-", f"the listener accepted {self.net.listener.accepted}")
        self.check(self.net.connects == [], "-", f"connect() was called for {self.net.connects}")
        self.check(self.net.lookups == [], "-", f"DNS would have been asked for {self.net.lookups}")
        assert not self.problems, "\n".join(self.problems)


def field_errors(response, name: str) -> list[str]:
    """The errors the tenant's page shows next to the field `name`."""
    page = response.content.decode()
    match = re.search(rf'<ul class="field-errors" id="id_{name}_error">(.*?)</ul>', page, re.S)
    return [html.unescape(e) for e in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)] if match else []


def admin_errors(response, name: str) -> list[str]:
    """The admin form's errors for `name`, checked to be on the page too."""
    form = response.context["adminform"].form if response.context and "adminform" in response.context else None
    errors = list(form.errors.get(name, [])) if form is not None else []
    page = html.unescape(response.content.decode())
    return [e for e in errors if e in page]


def refused(errors: list[str], case: Case) -> bool:
    return any(case.text in e for e in errors)


# --- 1. the tenant's forms ---------------------------------------------------------


def _server_post(case: Case, **extra: object) -> dict:
    port = case.port or 465
    return {**SERVER_FORM, "host": case.host, "port": port, "security": "ssl" if port == 465 else "none", **extra}


def test_the_server_form_refuses_every_internal_host_and_port_25(alice, tenant_a, net):
    attempts = Attempts("server form", net)
    for case in SERVER_CASES:
        attempts.attempt()
        response = alice.client.post(reverse("servers:add"), _server_post(case, accept_warning="on"))
        attempts.check(response.status_code == 400, case, f"add answered {response.status_code}")
        attempts.check(refused(field_errors(response, case.field), case), case, f"no refusal next to {case.field}")
    attempts.stored(SmtpServer.objects.count())

    # Editing a legitimate server: the same refusals, and the stored row stays as it was.
    response = alice.client.post(reverse("servers:add"), SERVER_FORM)
    assert response.status_code == 302
    server = SmtpServer.objects.get(tenant=tenant_a)
    before = SmtpServer.objects.filter(pk=server.pk).values().get()
    for case in SERVER_CASES:
        attempts.attempt()
        data = _server_post(case, accept_warning="on", password="retyped")
        response = alice.client.post(reverse("servers:edit", args=[server.public_id]), data)
        attempts.check(response.status_code == 400, case, f"edit answered {response.status_code}")
        attempts.check(refused(field_errors(response, case.field), case), case, f"no refusal next to {case.field}")
    attempts.stored(int(SmtpServer.objects.filter(pk=server.pk).values().get() != before))
    attempts.stored(SmtpServer.objects.count() - 1)
    attempts.done()


def test_the_bounce_mailbox_form_refuses_every_internal_host(alice, tenant_a, net):
    attempts = Attempts("mailbox form", net)
    for index, case in enumerate(HOST_CASES):  # IMAP and POP3 in turn: the host rule is the same
        protocol, port = ("imap", 993) if index % 2 else ("pop3", 995)
        attempts.attempt()
        data = {**MAILBOX_FORM, "host": case.host, "protocol": protocol, "port": port}
        response = alice.client.post(reverse("servers:mailbox"), data)
        attempts.check(response.status_code == 400, case, f"{protocol} add answered {response.status_code}")
        attempts.check(refused(field_errors(response, "host"), case), case, f"{protocol}: no refusal next to host")
    attempts.stored(BounceMailbox.objects.count())

    assert alice.client.post(reverse("servers:mailbox"), MAILBOX_FORM).status_code == 302
    mailbox = BounceMailbox.objects.get(tenant=tenant_a)
    before = BounceMailbox.objects.filter(pk=mailbox.pk).values().get()
    for case in HOST_CASES:
        attempts.attempt()
        data = {**MAILBOX_FORM, "host": case.host, "password": "retyped"}
        response = alice.client.post(reverse("servers:mailbox"), data)
        attempts.check(response.status_code == 400, case, f"edit answered {response.status_code}")
        attempts.check(refused(field_errors(response, "host"), case), case, "edit: no refusal next to host")
    attempts.stored(int(BounceMailbox.objects.filter(pk=mailbox.pk).values().get() != before))
    attempts.done()


# --- 2. the staff admin ---------------------------------------------------------------


@pytest.fixture
def staff(staff_client: Client) -> Client:
    return staff_client


def _admin_server(tenant, case: Case) -> dict:
    port = case.port or 465
    return {
        "tenant": tenant.pk, "name": "via admin", "kind": case.kind, "enabled": "on", "priority": 0,
        "sender_email": "a@acme.test", "sender_name": "", "host": case.host, "port": port,
        "security": "ssl" if port == 465 else "none", "verify_tls": "on", "login": "a@acme.test",
        "new_password": "pw", "max_per_hour": "", "max_per_day": "", "tenant_daily_quota": "",
        "quotas-TOTAL_FORMS": 0, "quotas-INITIAL_FORMS": 0,
    }  # fmt: skip


def _admin_mailbox(tenant, case: Case) -> dict:
    return {
        "tenant": tenant.pk, "protocol": "imap", "email": "b@acme.test", "host": case.host, "port": 993,
        "security": "ssl", "login": "b@acme.test", "verify_tls": "on", "folder": "INBOX", "enabled": "on",
        "last_error": "", "new_password": "pw", "created_at_0": "2026-01-01", "created_at_1": "00:00:00",
    }  # fmt: skip


def admin_form(model: type[SmtpServer | BounceMailbox], obj: SmtpServer | BounceMailbox | None = None) -> type:
    """The form class the admin's add or change page binds the POST to."""
    request = RequestFactory().post("/")
    request.user = get_user_model().objects.get(is_superuser=True)
    return admin.site._registry[model].get_form(request, obj, change=obj is not None)


def admin_form_refuses(attempts: Attempts, model: type, cases: list[Case], data, obj=None) -> None:
    """Every case through the admin's form class, as its page would bind it."""
    form_class = admin_form(model, obj)
    for case in cases:
        attempts.attempt()
        instance = model.objects.get(pk=obj.pk) if obj is not None else model()
        form = form_class(data(case), instance=instance)
        errors = [] if form.is_valid() else form.errors.get(case.field, [])
        attempts.check(refused(errors, case), case, f"{'change' if obj else 'add'} form: no refusal on {case.field}")


# Through the admin's pages (and the tenant's pages of an edited record),
# one host of each kind, port 25 and Internal SMTP: the pages bind the form
# and show its refusal. Every spelling goes through that form class
# directly, the same code without the page around it.
PAGE_SERVER_CASES = [*KIND_CASES, PORT_25, INTERNAL]


def test_the_admin_refuses_tenant_servers_on_internal_hosts_port_25_or_internal_smtp(staff, tenant_a, net):
    attempts = Attempts("admin: servers", net)
    add = reverse("admin:servers_smtpserver_add")
    admin_form_refuses(attempts, SmtpServer, ALL_SERVER_CASES, lambda case: _admin_server(tenant_a, case))
    for case in PAGE_SERVER_CASES:
        attempts.attempt()
        response = staff.post(add, _admin_server(tenant_a, case))
        attempts.check(response.status_code == 200, case, f"add answered {response.status_code}")
        attempts.check(refused(admin_errors(response, case.field), case), case, f"add: no refusal on {case.field}")
    attempts.stored(SmtpServer.objects.count())

    assert staff.post(add, _admin_server(tenant_a, Case("public", "host", "", host=PUBLIC))).status_code == 302
    server = SmtpServer.objects.get()
    before = SmtpServer.objects.filter(pk=server.pk).values().get()
    change = reverse("admin:servers_smtpserver_change", args=[server.pk])
    admin_form_refuses(attempts, SmtpServer, ALL_SERVER_CASES, lambda case: _admin_server(tenant_a, case), server)
    for case in PAGE_SERVER_CASES:
        attempts.attempt()
        response = staff.post(change, _admin_server(tenant_a, case))
        attempts.check(response.status_code == 200, case, f"change answered {response.status_code}")
        attempts.check(refused(admin_errors(response, case.field), case), case, f"change: no refusal on {case.field}")
    attempts.stored(int(SmtpServer.objects.filter(pk=server.pk).values().get() != before))
    attempts.done()


def test_the_admin_refuses_bounce_mailboxes_on_internal_hosts(staff, tenant_a, net):
    attempts = Attempts("admin: mailboxes", net)
    add = reverse("admin:servers_bouncemailbox_add")
    admin_form_refuses(attempts, BounceMailbox, HOST_CASES, lambda case: _admin_mailbox(tenant_a, case))
    for case in KIND_CASES:
        attempts.attempt()
        response = staff.post(add, _admin_mailbox(tenant_a, case))
        attempts.check(response.status_code == 200, case, f"add answered {response.status_code}")
        attempts.check(refused(admin_errors(response, "host"), case), case, "add: no refusal on host")
    attempts.stored(BounceMailbox.objects.count())

    assert staff.post(add, _admin_mailbox(tenant_a, Case("public", "host", "", host=PUBLIC))).status_code == 302
    mailbox = BounceMailbox.objects.get()
    before = BounceMailbox.objects.filter(pk=mailbox.pk).values().get()
    change = reverse("admin:servers_bouncemailbox_change", args=[mailbox.pk])
    admin_form_refuses(attempts, BounceMailbox, HOST_CASES, lambda case: _admin_mailbox(tenant_a, case), mailbox)
    for case in KIND_CASES:
        attempts.attempt()
        response = staff.post(change, _admin_mailbox(tenant_a, case))
        attempts.check(response.status_code == 200, case, f"change answered {response.status_code}")
        attempts.check(refused(admin_errors(response, "host"), case), case, "change: no refusal on host")
    attempts.stored(int(BounceMailbox.objects.filter(pk=mailbox.pk).values().get() != before))
    attempts.done()


# --- records edited behind clean()'s back ------------------------------------------------


def legit_server(person, tenant) -> SmtpServer:
    """Stored through the tenant's form with the guard on: a public host on 465."""
    response = person.client.post(reverse("servers:add"), SERVER_FORM)
    assert response.status_code == 302, response.content
    return SmtpServer.objects.get(tenant=tenant)


def legit_mailbox(person, tenant) -> BounceMailbox:
    response = person.client.post(reverse("servers:mailbox"), MAILBOX_FORM)
    assert response.status_code == 302, response.content
    return BounceMailbox.objects.get(tenant=tenant)


def edit_behind_the_forms_back(record: SmtpServer | BounceMailbox, case: Case, net: Net, settings) -> None:
    """A queryset update: no clean(), no form. Every internal host points at
    the listener's port, so a connection that got through would be counted."""
    port = case.port or net.listener.port
    # Plain text: a connection that got through would be a bare TCP connect.
    values: dict[str, object] = {"host": case.host, "port": port, "security": "none", "health": Health.UNKNOWN}
    if isinstance(record, SmtpServer):
        values["kind"] = case.kind
        if case.kind == SmtpServer.Kind.INTERNAL:
            # Internal SMTP connects to this machine's mail server: the listener.
            settings.INTERNAL_SMTP_HOST, settings.INTERNAL_SMTP_PORT = "127.0.0.1", net.listener.port
    type(record).objects.filter(pk=record.pk).update(**values)


# --- 3. the connection test ---------------------------------------------------------------


def test_the_connection_test_of_an_edited_record_refuses_and_never_connects(
    alice, tenant_a, net, settings, django_capture_on_commit_callbacks
):
    attempts = Attempts("connection test", net)
    server = legit_server(alice, tenant_a)
    mailbox = legit_mailbox(alice, tenant_a)
    targets = [(server, c, reverse("servers:test_start", args=[server.public_id])) for c in ALL_SERVER_CASES]
    targets += [(mailbox, c, reverse("servers:mailbox_test")) for c in HOST_CASES]
    for record, case, url in targets:
        edit_behind_the_forms_back(record, case, net, settings)
        attempts.attempt()
        with django_capture_on_commit_callbacks(execute=True):
            response = alice.client.post(url)
        attempts.check(response.status_code == 302, case, f"starting the test answered {response.status_code}")
        test = ConnectionTest.objects.order_by("-pk").first()
        report = alice.client.get(reverse("servers:test_json", args=[test.public_id])).json()
        attempts.check(report["status"] == "failed", case, f"the test {report['status']}")
        attempts.check(case.text in report["error"], case, f"the tenant reads {report['error']!r}")
        steps = [(s["name"], s["ok"]) for s in report["steps"]]
        attempts.check(steps == [("Check the settings", False)], case, f"steps {steps}")
        record.refresh_from_db()
        attempts.check(record.health == Health.FAILING and case.text in record.health_error, case, "health")
    attempts.done()


MALFORMED = ["a b.example", "mail.example/x", "user@127.0.0.1", "fe80::1%eth0"]  # a zone id picks an interface


def test_the_connection_test_of_a_record_with_a_malformed_host_finishes_refused(
    alice, tenant_a, net, settings, django_capture_on_commit_callbacks
):
    attempts = Attempts("connection test", net)
    server = legit_server(alice, tenant_a)
    mailbox = legit_mailbox(alice, tenant_a)
    targets = [(server, reverse("servers:test_start", args=[server.public_id]))]
    targets += [(mailbox, reverse("servers:mailbox_test"))]
    for (record, url), host in [(target, host) for target in targets for host in MALFORMED]:
        case = Case(host, "host", "not allowed", host=host)
        edit_behind_the_forms_back(record, case, net, settings)
        attempts.attempt()
        with django_capture_on_commit_callbacks(execute=True):
            alice.client.post(url)
        test = ConnectionTest.objects.order_by("-pk").first()
        attempts.check(test.status == ConnectionTest.Status.FAILED, case, f"the test is {test.status}")
        attempts.check(case.text in test.error, case, f"the tenant reads {test.error!r}")
    attempts.done()


# --- 4. the dispatcher ----------------------------------------------------------------------


def test_dispatch_through_an_edited_server_refuses_and_keeps_the_letters(alice, tenant_a, net, settings):
    attempts = Attempts("dispatch", net)
    server = legit_server(alice, tenant_a)
    mailing = start_mailing(tenant_a, [server], 3)
    letters = Letter.objects.filter(mailing=mailing)
    first = True
    for case in ALL_SERVER_CASES:
        edit_behind_the_forms_back(server, case, net, settings)
        attempts.attempt()
        if first:  # the Celery task, eagerly, while the mailing is active
            tasks.send_mailing.delay(mailing.pk)
            first = False
        else:  # the server "fixed" (its health back): the blocked mailing wakes and tries it
            SmtpServer.objects.filter(pk=server.pk).update(health=Health.UNKNOWN)
            dispatch.run_mailing(mailing_id=mailing.pk)
        mailing.refresh_from_db()
        # Its only server is failing: no time to wait for, the mailing cannot send.
        attempts.check(mailing.status == Mailing.Status.BLOCKED, case, f"the mailing is {mailing.status}")
        attempts.check(mailing.resume_at is None, case, "a resume time")
        server.refresh_from_db()
        attempts.check(server.health == Health.FAILING, case, f"the server is {server.health}")
        attempts.check(case.text in server.health_error, case, f"the server says {server.health_error!r}")
        states = sorted(letters.values_list("status", "attempts", "server"))
        queued = [(Letter.Status.QUEUED, 0, None)] * 3
        attempts.check(states == queued, case, f"letters {states}")
    attempts.done()


# --- 5. the bounce reader -------------------------------------------------------------------


def test_reading_an_edited_bounce_mailbox_refuses_and_never_connects(alice, tenant_a, net, settings):
    attempts = Attempts("bounce reader", net)
    mailbox = legit_mailbox(alice, tenant_a)
    for case in HOST_CASES:
        for protocol in ("imap", "pop3"):
            edit_behind_the_forms_back(mailbox, case, net, settings)
            # Each case is a fresh attempt, not a retry the mailbox backs off from.
            fresh = {"protocol": protocol, "last_error": "", "failures": 0, "next_check_at": None}
            BounceMailbox.objects.filter(pk=mailbox.pk).update(**fresh)
            attempts.attempt()
            tasks.read_bounce_mailboxes.delay()
            mailbox.refresh_from_db()
            attempts.check(case.text in mailbox.last_error, case, f"{protocol}: last error {mailbox.last_error!r}")
            attempts.check(mailbox.health == Health.FAILING, case, f"{protocol}: health {mailbox.health}")
            attempts.check(mailbox.reader_lock_token is None, case, f"{protocol}: the lease was kept")
    attempts.done()


# --- 6. an edited record opened in the tenant's form and saved as shown ---------------------


def shown_values(form) -> dict:
    """What the edit page's form shows, as the browser would post it back."""
    data = {}
    for bound in form:
        value = bound.value()
        if bound.widget_type == "checkbox":
            if value:
                data[bound.html_name] = "on"
        elif value is not None:
            data[bound.html_name] = value
    return data


def test_an_edited_record_saved_as_the_form_shows_it_is_refused(alice, tenant_a, net, settings):
    attempts = Attempts("edited record in the form", net)
    server = legit_server(alice, tenant_a)
    mailbox = legit_mailbox(alice, tenant_a)
    # Every spelling through the forms the pages bind: unbound to show the
    # record (as the edit page's GET), then bound to what they show.
    forms = [(server, SmtpServerForm, case) for case in ALL_SERVER_CASES]
    forms += [(mailbox, BounceMailboxForm, case) for case in HOST_CASES]
    for record, form_class, case in forms:
        edit_behind_the_forms_back(record, case, net, settings)
        stored = type(record).objects.get(pk=record.pk)
        attempts.attempt()
        form = form_class(shown_values(form_class(instance=stored)), instance=stored)
        field, text = refusal_in_the_form(case)
        errors = [] if form.is_valid() else form.errors.get(field, [])
        attempts.check(any(text in e for e in errors), case, f"form: no refusal on {field}")

    # One of each kind through the pages: shown next to the field, the record unchanged.
    url = reverse("servers:edit", args=[server.public_id])
    targets = [(server, case, url) for case in PAGE_SERVER_CASES]
    targets += [(mailbox, case, reverse("servers:mailbox")) for case in KIND_CASES]
    for record, case, url in targets:
        edit_behind_the_forms_back(record, case, net, settings)
        before = type(record).objects.filter(pk=record.pk).values().get()
        attempts.attempt()
        response = alice.client.post(url, shown_values(alice.client.get(url).context["form"]))
        attempts.check(response.status_code == 400, case, f"saving answered {response.status_code}")
        field, text = refusal_in_the_form(case)
        attempts.check(any(text in e for e in field_errors(response, field)), case, f"no refusal next to {field}")
        attempts.stored(int(type(record).objects.filter(pk=record.pk).values().get() != before))
    attempts.done()


def refusal_in_the_form(case: Case) -> tuple[str, str]:
    # The SaaS form offers no Internal SMTP: it is an External server without a host.
    return ("host", "Enter the SMTP server") if case is INTERNAL else (case.field, case.text)


def test_saving_a_record_with_a_rule_the_saas_form_does_not_show_is_no_crash(alice, tenant_a, net, settings):
    """Internal SMTP and unverified TLS have no field in the SaaS form; a
    record carrying them (edited behind the form's back, or made before a
    switch to SaaS) is set right by saving, rather than a server error."""
    server = legit_server(alice, tenant_a)
    mailbox = legit_mailbox(alice, tenant_a)
    SmtpServer.objects.filter(pk=server.pk).update(kind=SmtpServer.Kind.INTERNAL, verify_tls=False)
    BounceMailbox.objects.filter(pk=mailbox.pk).update(verify_tls=False)
    response = alice.client.post(reverse("servers:edit", args=[server.public_id]), SERVER_FORM)
    assert response.status_code == 302
    assert SmtpServer.objects.values_list("kind", "verify_tls", "host").get() == ("external", True, PUBLIC)
    assert alice.client.post(reverse("servers:mailbox"), MAILBOX_FORM).status_code == 302
    assert BounceMailbox.objects.values_list("verify_tls", flat=True).get() is True
