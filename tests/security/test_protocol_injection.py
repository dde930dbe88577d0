"""A tenant's mailbox password goes into an IMAP LOGIN or a POP3 PASS line
as typed (SMTP sends it in base64). A line break in it would end that line
and start a command of the tenant's choosing on our connection: none may
ever reach the server. Real sockets, a server that records every line."""

import socket
import threading

import pytest
from django.urls import reverse

from servers import netguard
from servers.models import BounceMailbox, SmtpServer

INJECTED = b"X1 DELETE INBOX"
PASSWORDS = [
    "secret\r\nX1 DELETE INBOX",
    "secret\nX1 DELETE INBOX",
    "secret\rX1 DELETE INBOX",
]


class Recorder:
    """A one-connection server: sends `greeting`, answers each line with
    what `answer` gives, and keeps every line it receives."""

    def __init__(self, greeting: bytes, answer) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.greeting, self.answer = greeting, answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(self.greeting)
            buffer = b""
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        conn.sendall(self.answer(line.rstrip(b"\r")))
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)

    @property
    def addresses(self) -> list[netguard.Address]:
        return [(socket.AF_INET, ("127.0.0.1", self.port))]


def _imap_answer(line: bytes) -> bytes:
    tag, _, rest = line.partition(b" ")
    if rest.upper().startswith(b"CAPABILITY"):
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
    return tag + b" OK done\r\n"


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_line_break_in_an_imap_password_sends_no_command(password):
    server = Recorder(b"* OK IMAP4rev1 ready\r\n", _imap_answer)
    try:
        client = netguard.PinnedIMAP4("localhost", server.port, addresses=server.addresses, timeout=5)
        with pytest.raises(client.error):
            client.login("user", password)
        client.shutdown()
    finally:
        server.close()
    assert INJECTED not in server.received
    assert b"LOGIN" not in server.received


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_line_break_in_a_pop3_password_sends_no_command(password):
    server = Recorder(b"+OK POP3 ready\r\n", lambda line: b"+OK\r\n")
    try:
        client = netguard.PinnedPOP3("localhost", server.port, addresses=server.addresses, timeout=5)
        client.user("user")
        with pytest.raises(netguard.poplib.error_proto):
            client.pass_(password)
        client.close()
    finally:
        server.close()
    assert INJECTED not in server.received
    assert b"PASS" not in server.received


@pytest.mark.parametrize("login", ["user\r\nX1 DELETE INBOX", "user\nX1 DELETE INBOX"])
def test_a_line_break_in_a_pop3_or_imap_login_sends_no_command(login):
    """The forms refuse it; the connection refuses it too, whatever saved it."""
    imap = Recorder(b"* OK IMAP4rev1 ready\r\n", _imap_answer)
    pop = Recorder(b"+OK POP3 ready\r\n", lambda line: b"+OK\r\n")
    try:
        client = netguard.PinnedIMAP4("localhost", imap.port, addresses=imap.addresses, timeout=5)
        with pytest.raises(client.error):
            client.login(login, "secret")
        client.shutdown()
        pop_client = netguard.PinnedPOP3("localhost", pop.port, addresses=pop.addresses, timeout=5)
        with pytest.raises(netguard.poplib.error_proto):
            pop_client.user(login)
        pop_client.close()
    finally:
        imap.close()
        pop.close()
    assert INJECTED not in imap.received + pop.received


# The pages refuse such a password when it is typed, in words the tenant
# reads, rather than at every connection later.
MAILBOX = {"email": "bounces@acme.test", "host": "8.8.8.8", "port": 993, "security": "ssl",
           "login": "bounces@acme.test", "folder": "INBOX", "enabled": "on"}  # fmt: skip
SERVER = {"name": "Yandex", "sender_email": "box@yandex.ru", "host": "8.8.8.8", "port": 465, "security": "ssl",
          "login": "box@yandex.ru", "read_bounces": "on", "imap_host": "8.8.4.4", "imap_port": 993,
          "imap_security": "ssl"}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("password", [*PASSWORDS, "secret\x00"])
def test_the_pages_refuse_a_password_that_breaks_a_line(alice, tenant_a, password):
    response = alice.client.post(reverse("servers:mailbox"), {**MAILBOX, "password": password})
    assert response.status_code == 400 and response.context["form"].errors["password"]
    shared = {**SERVER, "password": password, "imap_same_password": "on"}
    response = alice.client.post(reverse("servers:add"), shared)
    assert response.status_code == 400 and response.context["form"].errors["password"]
    own = {**SERVER, "password": "smtp-pw", "imap_password": password}
    response = alice.client.post(reverse("servers:add"), own)
    assert response.status_code == 400 and response.context["form"].errors["imap_password"]
    assert not BounceMailbox.objects.filter(tenant=tenant_a).exists()
    assert not SmtpServer.objects.filter(tenant=tenant_a).exists()
