"""The bounce mailbox's connection test against a real IMAP server (the
Dovecot the suite starts)."""

from collections.abc import Callable

import pytest

from servers.models import BounceMailbox, Security
from servers.probes import imap_probe

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(tenant_a, dovecot_mailbox, settings):
    settings.SERVERS_EXTRA_CA_FILE = str(dovecot_mailbox.ca_file)
    box = BounceMailbox(
        tenant=tenant_a,
        host="localhost",
        port=dovecot_mailbox.imaps_port,
        security=Security.SSL,
        login=dovecot_mailbox.user,
    )
    box.set_password(dovecot_mailbox.password)
    box.save()
    return box


def test_imaps_logs_in_and_counts_the_folder(mailbox, dovecot_mailbox):
    dovecot_mailbox.deliver(b"Subject: one\r\n\r\nbody\r\n")
    dovecot_mailbox.deliver(b"Subject: two\r\n\r\nbody\r\n", seen=True)
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    names = [s.name for s in result.steps]
    assert names == ["Check the settings", "Connect with SSL/TLS", "Log in", "Open the folder INBOX", "Log out"]
    assert result.steps[3].detail == "2 message(s)"


def test_starttls_on_the_plain_port(mailbox, dovecot_mailbox):
    mailbox.port, mailbox.security = dovecot_mailbox.imap_port, Security.STARTTLS
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    assert "STARTTLS" in [s.name for s in result.steps]


def test_a_wrong_password_is_explained(mailbox):
    mailbox.set_password("not-the-password")
    result = imap_probe(mailbox)
    assert result.diagnosis.category == "auth"
    assert result.steps[-1].name == "Log in" and not result.steps[-1].ok


def test_a_missing_folder_is_reported(mailbox):
    mailbox.folder = "Bounces"
    result = imap_probe(mailbox)
    assert result.diagnosis is not None
    assert "Bounces" in result.diagnosis.message


def test_the_wrong_certificate_authority_is_refused(mailbox, settings):
    settings.SERVERS_EXTRA_CA_FILE = ""
    result = imap_probe(mailbox)
    assert result.diagnosis.category == "tls_certificate"


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_a_pop3_mailbox_is_tested_over_pop3(mailbox, dovecot_mailbox, security):
    from servers.probes import mailbox_probe

    dovecot_mailbox.deliver(b"Subject: one\r\n\r\nbody\r\n")
    mailbox.protocol = BounceMailbox.Protocol.POP3
    mailbox.security = security
    mailbox.port = dovecot_mailbox.pop3s_port if security == Security.SSL else dovecot_mailbox.pop3_port
    result = mailbox_probe(mailbox)
    assert result.ok, result.diagnosis
    assert result.steps[-2].detail.startswith("1 message(s)")
    mailbox.set_password("wrong")
    assert mailbox_probe(mailbox).diagnosis.category == "auth"


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_a_login_and_password_in_cyrillic_log_in(mailbox, dovecot_mailbox, security):
    # imaplib sends LOGIN in ASCII and failed before a word was sent, with
    # an untranslated codec error as the diagnosis.
    from tests.dovecot import UTF8_PASSWORD, UTF8_USER

    mailbox.security = security
    mailbox.port = dovecot_mailbox.imaps_port if security == Security.SSL else dovecot_mailbox.imap_port
    mailbox.login = UTF8_USER
    mailbox.set_password(UTF8_PASSWORD)
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    mailbox.set_password(UTF8_PASSWORD + "x")
    assert imap_probe(mailbox).diagnosis.category == "auth"


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_a_login_that_is_a_persons_name_logs_in(mailbox, dovecot_mailbox, security):
    """HCL Domino's IMAP logs in by the person's name ("Ivan Ivanov/Sales").
    imaplib puts an ASCII login into LOGIN as it is: the server read "Ivan"
    as the login and refused the command (BAD), for every reading of the
    bounce mailbox. It goes as a quoted string now, where it is no atom."""
    from tests.dovecot import NAMED_PASSWORD, NAMED_USER

    mailbox.security = security
    mailbox.port = dovecot_mailbox.imaps_port if security == Security.SSL else dovecot_mailbox.imap_port
    mailbox.login = NAMED_USER
    mailbox.set_password(NAMED_PASSWORD)
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    mailbox.set_password(NAMED_PASSWORD + "x")
    assert imap_probe(mailbox).diagnosis.category == "auth"


def _imap_server(greeting: bytes, answers: dict) -> Callable:
    """A scripted IMAP server: `greeting`, then each command answered by
    its entry in `answers` (peer, tag, line, rest; it says the tagged
    reply), LOGOUT with BYE, any other with OK."""

    def script(peer) -> None:
        peer.say(greeting)
        while line := peer.line():
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ", 1)[0].strip().upper()
            if command == b"LOGOUT":
                peer.say(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            if (answer := answers.get(command)) is not None:
                answer(peer, tag, line, rest)
            else:
                peer.say(tag + b" OK done\r\n")

    return script


def _login_by_literal(received: list[bytes]) -> Callable:
    """An IMAP server that offers no AUTH=PLAIN: LOGIN, the password a literal."""

    def login(peer, tag: bytes, line: bytes, rest: bytes) -> None:
        size = int(line.rsplit(b"{", 1)[1].split(b"}")[0])
        peer.say(b"+ go ahead\r\n")
        while len(peer.pending) < size + 2:
            peer.pending += peer.recv()
        password, peer.pending = peer.pending[:size], peer.pending[size + 2 :]
        received.append(rest.strip() + b" " + password)
        peer.say(tag + b" OK logged in\r\n")

    def select(peer, tag: bytes, line: bytes, rest: bytes) -> None:
        peer.say(b"* 0 EXISTS\r\n" + tag + b" OK [READ-WRITE] done\r\n")

    greeting = b"* OK [CAPABILITY IMAP4rev1] literal.test ready\r\n"
    return _imap_server(greeting, {b"LOGIN": login, b"SELECT": select, b"EXAMINE": select})


def test_a_cyrillic_login_goes_as_utf8_with_the_password_a_literal_where_plain_is_not_offered(tenant_a):
    from tests.smtp_servers import tarpit

    received: list[bytes] = []
    with tarpit(_login_by_literal(received)) as port:
        box = BounceMailbox(
            tenant=tenant_a, host="127.0.0.1", port=port, security=Security.NONE, login="почта@пример.рф"
        )
        box.set_password('пароль "ящика"')  # quotes: a quoted string would need escapes
        box.save()
        result = imap_probe(box)
    assert result.ok, result.diagnosis
    password = 'пароль "ящика"'.encode()
    assert received == [b'LOGIN "' + "почта@пример.рф".encode() + b'" {%d} ' % len(password) + password]


def test_a_folder_opened_without_a_message_count_passes(tenant_a):
    # The probe read the count as int(None): "Unexpected error: int()
    # argument must be ... not 'NoneType'" for a folder the server opened.
    from tests.smtp_servers import tarpit

    def authenticate(peer, tag: bytes, line: bytes, rest: bytes) -> None:
        peer.say(b"+ \r\n")
        peer.line()
        peer.say(tag + b" OK done\r\n")

    # SELECT answered OK with no "* n EXISTS" before it.
    no_exists = _imap_server(
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] odd.test ready\r\n", {b"AUTHENTICATE": authenticate}
    )

    with tarpit(no_exists) as port:
        box = BounceMailbox(tenant=tenant_a, host="127.0.0.1", port=port, security=Security.NONE, login="box")
        box.set_password("secret")
        box.save()
        result = imap_probe(box)
    assert result.ok, result.diagnosis
    assert "None" not in result.steps[-2].detail


def _probe_on(tenant, script, *, login="box", password="secret", folder="INBOX", certs=None):
    """The connection test against `script`, over implicit TLS with `certs`."""
    from tests.smtp_servers import tarpit

    tls = certs.server_context() if certs else None
    with tarpit(script, tls=tls) as port:
        box = BounceMailbox(
            tenant=tenant,
            host="localhost" if certs else "127.0.0.1",
            port=port,
            security=Security.SSL if certs else Security.NONE,
            login=login,
            folder=folder,
        )
        box.set_password(password)
        box.save()
        return imap_probe(box)


def _recording(commands: list[bytes], answers: dict) -> dict:
    """`answers`, each also writing down the line it answered."""

    def wrap(answer: Callable) -> Callable:
        def recorded(peer, tag: bytes, line: bytes, rest: bytes) -> None:
            commands.append(rest.strip())
            answer(peer, tag, line, rest)

        return recorded

    return {name: wrap(answer) for name, answer in answers.items()}


def _refuse(peer, tag: bytes, line: bytes, rest: bytes) -> None:
    peer.say(tag + b" NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.\r\n")


def _opened(peer, tag: bytes, line: bytes, rest: bytes) -> None:
    peer.say(b"* 3 EXISTS\r\n" + tag + b" OK [READ-WRITE] done\r\n")


def test_a_server_that_disables_login_before_starttls_gets_no_password_and_a_clear_reason(tenant_a):
    """Exchange and Dovecot on port 143 say LOGINDISABLED until STARTTLS.
    imaplib sent the password in clear all the same, and its refusal read
    "The mailbox refused the login or password": the tenant checked a
    password that was right."""
    commands: list[bytes] = []
    greeting = b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=NTLM] exchange.test ready\r\n"
    answers = _recording(commands, {b"LOGIN": _refuse, b"AUTHENTICATE": _refuse})
    result = _probe_on(tenant_a, _imap_server(greeting, answers), password="secret-pw")
    assert not any(b"secret-pw" in c or c.startswith((b"LOGIN", b"AUTHENTICATE")) for c in commands), commands
    assert result.diagnosis.category == "tls"
    assert "encrypted" in result.diagnosis.message and "STARTTLS" in result.diagnosis.hint


@pytest.mark.parametrize("password", ["secret", "пароль"])
def test_a_server_that_offers_only_cram_md5_is_logged_in_with_it(tenant_a, password):
    import base64
    import hashlib
    import hmac

    challenge = b"<1896.697170952@cram.test>"
    seen: list[bytes] = []

    def authenticate(peer, tag: bytes, line: bytes, rest: bytes) -> None:
        assert rest.split()[1].upper() == b"CRAM-MD5"
        peer.say(b"+ " + base64.b64encode(challenge) + b"\r\n")
        seen.append(base64.b64decode(peer.line().strip()))
        peer.say(tag + b" OK logged in\r\n")

    greeting = b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=CRAM-MD5] cram.test ready\r\n"
    script = _imap_server(greeting, {b"LOGIN": _refuse, b"AUTHENTICATE": authenticate, b"EXAMINE": _opened})
    result = _probe_on(tenant_a, script, login="почта@пример.рф", password=password)
    # Before the fix: LOGIN, refused ("The mailbox refused the login or password").
    assert result.ok, result.diagnosis
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    assert seen == ["почта@пример.рф".encode() + b" " + digest.encode()]


def test_a_server_with_no_login_method_we_speak_says_which_it_has(tenant_a, tmp_path, settings):
    from tests.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    settings.SERVERS_EXTRA_CA_FILE = str(certs.ca_file)
    greeting = b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI AUTH=XOAUTH2] sso.test ready\r\n"
    result = _probe_on(tenant_a, _imap_server(greeting, {b"LOGIN": _refuse}), certs=certs)
    assert result.diagnosis.category == "auth_method"
    assert "GSSAPI, XOAUTH2" in result.diagnosis.message


def test_a_cyrillic_folder_is_opened_by_its_modified_utf7_name(tenant_a):
    """RFC 3501 names folders in modified UTF-7; a server without
    UTF8=ACCEPT knows "Входящие" only as &BBIERQQ+BDQETwRJBDgENQ-. imaplib
    failed before a word was sent: "Unexpected error: 'ascii' codec can't
    encode characters"."""
    commands: list[bytes] = []
    greeting = b"* OK [CAPABILITY IMAP4rev1] folders.test ready\r\n"
    script = _imap_server(greeting, _recording(commands, {b"EXAMINE": _opened, b"SELECT": _opened}))
    result = _probe_on(tenant_a, script, folder="Входящие")
    assert result.ok, result.diagnosis
    assert commands == [b'EXAMINE "&BBIERQQ+BDQETwRJBDgENQ-"']


def _pop3_refusing_plaintext(peer) -> None:
    """Dovecot's POP3 with disable_plaintext_auth (its default) on port 110."""
    peer.say(b"+OK Dovecot ready.\r\n")
    while line := peer.line():
        verb = line.split(b" ", 1)[0].strip().upper()
        if verb == b"QUIT":
            peer.say(b"+OK Logging out.\r\n")
            return
        if verb == b"PASS":
            peer.say(b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n")
        else:
            peer.say(b"+OK\r\n")


@pytest.mark.parametrize("protocol", [BounceMailbox.Protocol.IMAP, BounceMailbox.Protocol.POP3])
def test_a_refusal_of_a_login_in_clear_asks_for_encryption_not_another_password(tenant_a, protocol):
    """A server that refuses a login in clear without saying LOGINDISABLED
    first (POP3 has no way to): before the fix, "The mailbox refused the
    login or password", and the tenant changed a password that was right."""
    from servers.probes import mailbox_probe
    from tests.smtp_servers import tarpit

    greeting = b"* OK [CAPABILITY IMAP4rev1 STARTTLS] exchange.test ready\r\n"
    imap = _imap_server(greeting, {b"LOGIN": _refuse})
    script = _pop3_refusing_plaintext if protocol == BounceMailbox.Protocol.POP3 else imap
    with tarpit(script) as port:
        box = BounceMailbox(
            tenant=tenant_a, protocol=protocol, host="127.0.0.1", port=port, security=Security.NONE, login="box"
        )
        box.set_password("secret")
        box.save()
        result = mailbox_probe(box)
    assert result.diagnosis.category == "tls", result.diagnosis
    ports = "110" if protocol == BounceMailbox.Protocol.POP3 else "143"
    assert ports in result.diagnosis.hint


def test_a_server_that_offers_only_sasl_login_is_logged_in_with_it(tenant_a):
    import base64

    seen: list[bytes] = []

    def authenticate(peer, tag: bytes, line: bytes, rest: bytes) -> None:
        assert rest.split()[1].upper() == b"LOGIN"
        for prompt in (b"Username:", b"Password:"):
            peer.say(b"+ " + base64.b64encode(prompt) + b"\r\n")
            seen.append(base64.b64decode(peer.line().strip()))
        peer.say(tag + b" OK logged in\r\n")

    greeting = b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=LOGIN AUTH=NTLM] mdaemon.test ready\r\n"
    script = _imap_server(greeting, {b"LOGIN": _refuse, b"AUTHENTICATE": authenticate, b"EXAMINE": _opened})
    result = _probe_on(tenant_a, script, login="почта@пример.рф", password="пароль")
    # Before the fix: "no login by password that Postroute can use (it offers: LOGIN, NTLM)".
    assert result.ok, result.diagnosis
    assert seen == ["почта@пример.рф".encode(), "пароль".encode()]
