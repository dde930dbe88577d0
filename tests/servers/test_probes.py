"""Connection tests against real SMTP servers (aiosmtpd, in-process): each
step is timed, each failure explained as DOMAIN.md §7 says."""

import email
import email.header
import email.policy
import hmac
import re
import socket
import time

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from django.utils import translation
from django.utils.translation import gettext as _

from mailing.sink import SinkHandler
from servers import services
from servers.models import BounceMailbox, ConnectionTest, Health, Security
from servers.probes import smtp_probe
from tests.certs import make_certs
from tests.smtp_servers import (
    BlacklistingHandler,
    Scripted,
    byte_by_byte,
    endless_auth,
    endless_banner,
    endless_reply_to_data,
    imap_dribbling_at,
    pop3_dribbling_at,
    silent_server,
    smtp_server,
    tarpit,
)

from .factories import make_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def certs(tmp_path, settings):
    bundle = make_certs(tmp_path / "certs")
    settings.SERVERS_EXTRA_CA_FILE = str(bundle.ca_file)
    return bundle


def step_names(result) -> list[str]:
    return [s.name for s in result.steps]


def test_plain_smtp_with_the_right_password_passes_every_step(tenant_a):
    with smtp_server() as (controller, handler):
        result = smtp_probe(make_server(tenant_a, port=controller.port))
    assert result.ok, result.diagnosis
    assert step_names(result) == [
        "Check the settings", "Connect", "EHLO", "Log in (AUTH)", "Sender accepted (MAIL FROM)", "NOOP and QUIT",
    ]  # fmt: skip
    assert all(s.ok and s.ms >= 0 for s in result.steps)
    assert handler.received == []  # MAIL FROM was reset: nothing was sent


def test_a_wrong_password_is_an_authentication_failure_with_the_provider_hint(tenant_a):
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port, password="wrong")
        result = smtp_probe(server)
    d = result.diagnosis
    assert d.category == "auth" and d.disables_server
    assert "535" in d.message
    assert "app password" in d.hint
    assert not result.steps[-1].ok and result.steps[-1].name == "Log in (AUTH)"


def test_the_gmail_hint_is_given_for_gmail(tenant_a, monkeypatch):
    from servers import errors

    exc = __import__("smtplib").SMTPAuthenticationError(535, b"5.7.8 Username and Password not accepted")
    d = errors.diagnose(exc, host="smtp.gmail.com", port=465)
    assert d.category == "auth" and "Google Account" in d.hint


def test_starttls_with_a_verified_certificate(tenant_a, certs):
    with smtp_server(tls="starttls", certs=certs) as (controller, _):
        server = make_server(tenant_a, host="localhost", port=controller.port, security=Security.STARTTLS)
        result = smtp_probe(server)
    assert result.ok, result.diagnosis
    assert "STARTTLS" in step_names(result)


def test_implicit_tls_with_a_verified_certificate(tenant_a, certs):
    with smtp_server(tls="ssl", certs=certs) as (controller, _):
        server = make_server(tenant_a, host="localhost", port=controller.port, security=Security.SSL)
        result = smtp_probe(server)
    assert result.ok, result.diagnosis
    assert step_names(result)[1] == "Connect with SSL/TLS"


def test_a_certificate_from_an_unknown_authority_is_refused(tenant_a, tmp_path):
    untrusted = make_certs(tmp_path / "untrusted")  # its CA is not in SERVERS_EXTRA_CA_FILE
    with smtp_server(tls="ssl", certs=untrusted) as (controller, _):
        server = make_server(tenant_a, host="localhost", port=controller.port, security=Security.SSL)
        result = smtp_probe(server)
    assert result.diagnosis.category == "tls_certificate"


def test_ssl_against_a_plain_port_is_explained_as_a_port_security_mismatch(tenant_a):
    with smtp_server(auth=False) as (controller, _):
        server = make_server(tenant_a, port=controller.port, security=Security.SSL, login="")
        result = smtp_probe(server)
    assert result.diagnosis.category == "tls"
    assert "465" in result.diagnosis.hint


def test_550_5_7_1_on_mail_from_means_blacklisted(tenant_a):
    with smtp_server(handler=BlacklistingHandler()) as (controller, _):
        result = smtp_probe(make_server(tenant_a, port=controller.port))
    d = result.diagnosis
    assert d.category == "blacklisted" and d.disables_server
    assert "5.7.1" in d.message and "blacklist" in d.hint


def test_a_server_that_never_answers_times_out_within_the_limit(tenant_a):
    with silent_server() as port:
        started = time.monotonic()
        result = smtp_probe(make_server(tenant_a, port=port), timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.diagnosis.category == "timeout"
    assert elapsed < 3  # bounded by the probe's own deadline, not by the server


@pytest.mark.parametrize(("language", "seconds"), [("ru", "1 секунду"), ("vi", "1 giây"), ("en", "1 second")])
def test_a_server_silent_after_the_final_dot_is_explained_all_in_the_tenants_language(tenant_a, language, seconds):
    # The sentence said "1 seconds" in every language.
    def answer(conn, line):
        return b"235 2.7.0 Ok\r\n" if line.upper().startswith(b"AUTH") else None

    silent_after_dot = Scripted(
        answer, ehlo=b"250-odd.test\r\n250 AUTH PLAIN\r\n", after_dot=lambda c, b: lambda p: p.wait()
    )
    with tarpit(silent_after_dot, lasts=3) as port, translation.override(language):
        result = smtp_probe(make_server(tenant_a, port=port), send_to="me@example.test", timeout=1.0)
    assert result.diagnosis.category == "timeout" and not result.steps[-1].ok
    assert result.diagnosis.message.endswith(f"{seconds}."), result.diagnosis.message


@pytest.mark.parametrize(
    ("ehlo", "security", "step"),
    [
        (b"250 odd.test\r\n", "none", "AUTH"),  # no AUTH offered
        (b"250-odd.test\r\n250 AUTH PLAIN\r\n", "starttls", "STARTTLS"),  # no STARTTLS offered
    ],
    ids=["AUTH", "STARTTLS"],
)
def test_a_server_not_offering_what_the_settings_need_is_explained_in_the_tenants_language(
    tenant_a, ehlo, security, step
):
    # The diagnosis was smtplib's English ("SMTP AUTH extension not
    # supported by server..", with two dots) in every language.
    with tarpit(Scripted(ehlo=ehlo), lasts=3) as port, translation.override("ru"):
        result = smtp_probe(make_server(tenant_a, port=port, security=security))
    assert step in result.steps[-1].name and not result.steps[-1].ok
    message, hint = result.diagnosis.message, result.diagnosis.hint
    assert "not supported" not in message and ".." not in message, message
    assert "Сервер" in message and hint, (message, hint)


def test_connection_refused(tenant_a):
    from tests.helpers import free_port

    result = smtp_probe(make_server(tenant_a, port=free_port()))
    assert result.diagnosis.category == "refused"


def test_a_real_test_letter_reaches_the_given_address(tenant_a):
    with smtp_server() as (controller, handler):
        result = smtp_probe(make_server(tenant_a, port=controller.port), send_to="me@example.test")
    assert result.ok, result.diagnosis
    assert handler.received[0].rcpt_tos == ["me@example.test"]
    assert handler.received[0].message["Subject"].startswith("Postroute: test letter")


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_a_test_letter_in_the_tenants_language_keeps_its_header_names(tenant_a, language):
    # The wording is translated; the names From and Subject are not words but protocol.
    with smtp_server() as (controller, handler), translation.override(language):
        server = make_server(tenant_a, port=controller.port, sender_name="Иван", sender_email="box@example.test")
        result = smtp_probe(server, send_to="me@example.test")
    assert result.ok, result.diagnosis
    received = handler.received[0]
    assert received.mail_from == "box@example.test"
    assert "box@example.test" in received.message["From"]
    assert received.message["Subject"] and "Postroute" in received.message["Subject"]


ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
LONG_NAMES = [
    ("ru", "Общество с ограниченной ответственностью «Ромашка» — отдел продаж"),
    ("vi", "Công ty Trách nhiệm Hữu hạn Thương mại và Dịch vụ Nguyễn Văn Hoàng Phương Nam"),
]


def decoded(raw: bytes, header: str) -> str:
    """The header as an RFC 2047 reader shows it (Thunderbird, Outlook,
    email.header): the whitespace between two encoded words is dropped,
    so a space must travel inside a word."""
    value = re.sub(r"\r\n(?= )", "", email.message_from_bytes(raw, policy=email.policy.compat32)[header])
    if header == "From":
        value = value.rpartition("<")[0].strip()
    return str(email.header.make_header(email.header.decode_header(value)))


@pytest.mark.parametrize(("language", "name"), LONG_NAMES, ids=["ru", "vi"])
def test_a_test_letter_from_a_long_name_arrives_with_every_space(tenant_a, language, name):
    # The email package's folder cut the name into encoded words at any
    # character: a reader dropped the space between two of them
    # ("ограниченнойответственностью"), and the email package's own parser
    # split a word in two.
    with smtp_server() as (controller, handler), translation.override(language):
        server = make_server(tenant_a, port=controller.port, name=name, sender_name=name)
        result = smtp_probe(server, send_to="me@example.test")
        subject = _("Postroute: test letter through %(name)s") % {"name": name}
    assert result.ok, result.diagnosis
    raw = handler.received[0].data
    head = raw.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
        assert all(len(word) <= 75 for word in ENCODED_WORD.findall(line)), line
    assert (decoded(raw, "From"), decoded(raw, "Subject")) == (name, subject)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == subject and subject != "Postroute: test letter through " + name
    # That parser puts a space of its own between encoded words, never one inside a word.
    assert " ".join(msg["From"].addresses[0].display_name.split()) == name
    assert msg["From"].addresses[0].addr_spec == server.sender_email
    assert name in msg.get_content()


@pytest.mark.parametrize("send_to", ["", "ivan@пример.рф"], ids=["sender only", "test letter"])
def test_a_sender_on_an_international_domain_is_tested_as_the_dispatcher_sends_it(tenant_a, send_to):
    # As IDNA, which every server takes: not an ascii codec error.
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, sender_email="box@пример.рф", sender_name="Иван")
        result = smtp_probe(server, send_to=send_to)
    assert result.ok, result.diagnosis
    if send_to:
        received = handler.received[0]
        assert (received.mail_from, received.rcpt_tos) == ("box@xn--e1afmkfd.xn--p1ai", ["ivan@xn--e1afmkfd.xn--p1ai"])
        assert received.message["From"].addresses[0].addr_spec == "box@xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize("send_to", ["", "me@example.test"], ids=["sender only", "test letter"])
@pytest.mark.parametrize("utf8", [False, True], ids=["no SMTPUTF8", "SMTPUTF8"])
def test_a_sender_mailbox_that_is_not_ascii_needs_smtputf8_and_says_so(tenant_a, send_to, utf8):
    with smtp_server(enable_SMTPUTF8=utf8) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, sender_email="почта@пример.рф")
        result = smtp_probe(server, send_to=send_to)
    if not utf8:
        # Up front, before MAIL FROM: what every letter of a mailing would meet.
        assert result.diagnosis.category == "smtputf8"
        assert "почта@пример.рф" in result.diagnosis.message and "sender address" in result.diagnosis.message
        assert "SMTPUTF8" in result.diagnosis.hint
        assert result.steps[-1].name == "International sender addresses (SMTPUTF8)" and not result.steps[-1].ok
        assert handler.received == []
        return
    assert result.ok, result.diagnosis
    assert "International sender addresses (SMTPUTF8)" in [step.name for step in result.steps]
    if send_to:
        assert handler.received[0].mail_from == "почта@xn--e1afmkfd.xn--p1ai"
        assert "From: Postroute test <почта@xn--e1afmkfd.xn--p1ai>" in handler.received[0].data.decode()


@pytest.mark.parametrize("substitution", [True, False], ids=["its envelope sender", "the default Reply-To"])
@pytest.mark.parametrize("utf8", [False, True], ids=["no SMTPUTF8", "SMTPUTF8"])
def test_a_bounce_mailbox_that_is_not_ascii_is_named_up_front_where_smtputf8_is_missing(tenant_a, utf8, substitution):
    # The server's own sender is ASCII, and MAIL FROM it would pass: the
    # mailings' letters would still all wait, their envelope sender (a
    # substituting server's) or their Reply-To being the bounce mailbox.
    mailbox = BounceMailbox(tenant=tenant_a, host="imap.example.test", port=993, login="рассылка@компания.рф")
    services.mailbox_save(mailbox=mailbox, password="secret")
    with smtp_server(enable_SMTPUTF8=utf8) as (controller, _):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=substitution)
        result = smtp_probe(server)
    if utf8:
        assert result.ok, result.diagnosis
        return
    role = "bounce address" if substitution else "Reply-To address"
    assert result.diagnosis.category == "smtputf8"
    assert "рассылка@компания.рф" in result.diagnosis.message and role in result.diagnosis.message
    assert [step.name for step in result.steps][-2:] == ["Log in (AUTH)", "International sender addresses (SMTPUTF8)"]


class CramMd5Sink(SinkHandler):
    """Offers CRAM-MD5 (RFC 2195) besides aiosmtpd's PLAIN and LOGIN; it
    knows one password, as such a server must."""

    password = "пароль-2026"

    async def auth_CRAM__MD5(self, server, args):
        challenge = b"<1896.697170952@postroute.test>"
        response = await server.challenge_auth(challenge)
        login, _, digest = response.rpartition(b" ")
        expected = hmac.HMAC(self.password.encode(), challenge, "md5").hexdigest().encode()
        return AuthResult(success=digest == expected, auth_data=LoginPassword(login, self.password.encode()))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_a_login_and_password_that_are_not_ascii_go_in_utf8(tenant_a, mechanism):
    # RFC 4616: AUTH PLAIN carries UTF-8; a Yandex 360 login on a .рф domain,
    # a company server's password in Cyrillic.
    seen = []

    def utf8_authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((mechanism, auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True, handled=False)

    others = [m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m != mechanism]
    options = {"authenticator": utf8_authenticator, "auth_require_tls": False, "auth_exclude_mechanism": others}
    with smtp_server(auth=False, handler=CramMd5Sink(), **options) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, login="box@пример.рф", password="пароль-2026")
        result = smtp_probe(server, send_to="me@example.test")
    assert result.ok, result.diagnosis
    if mechanism != "CRAM-MD5":  # CRAM-MD5 sends a digest of the password, not the password
        assert seen == [(mechanism, "box@пример.рф", "пароль-2026")]
    assert len(handler.received) == 1


@pytest.mark.parametrize("script", [endless_banner, byte_by_byte, endless_auth])
def test_a_connection_test_against_a_tarpit_fails_with_a_timeout_in_time(
    tenant_a, settings, django_capture_on_commit_callbacks, script
):
    settings.SERVER_PROBE_TIMEOUT = 1.0
    with tarpit(script) as port:
        server = make_server(tenant_a, port=port)
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):  # the task, as a worker runs it
            test = services.connection_test_start(tenant=tenant_a, server=server)
        elapsed = time.monotonic() - started
    test.refresh_from_db()
    assert (test.status, test.category) == (ConnectionTest.Status.FAILED, "timeout")
    assert "kept sending" in test.error and test.finished_at is not None
    assert elapsed < settings.SERVER_PROBE_TIMEOUT + 1.5
    server.refresh_from_db()
    assert server.health == Health.FAILING


def test_a_tarpit_after_the_opening_is_cut_at_the_tests_own_limit(tenant_a):
    from servers import probes

    with tarpit(endless_reply_to_data) as port:
        server = make_server(tenant_a, port=port, login="")
        started = time.monotonic()
        result = probes.smtp_probe(server, send_to="me@example.test", timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.diagnosis.category == "timeout" and "kept sending" in result.diagnosis.message
    assert result.steps[-1].name == "Send a test letter to me@example.test" and not result.steps[-1].ok
    assert elapsed < 1.0 + 1.5


@pytest.mark.parametrize(
    ("protocol", "script"),
    [
        (BounceMailbox.Protocol.IMAP, imap_dribbling_at(b"LOGIN")),
        (BounceMailbox.Protocol.POP3, pop3_dribbling_at(b"STAT")),
    ],
    ids=["IMAP", "POP3"],
)
def test_a_bounce_mailbox_test_against_a_tarpit_fails_with_a_timeout_in_time(tenant_a, protocol, script):
    from servers import probes

    with tarpit(script) as port:
        mailbox = BounceMailbox(
            tenant=tenant_a, host="127.0.0.1", port=port, protocol=protocol, security=Security.NONE, login="box"
        )
        mailbox.set_password("secret")
        mailbox.save()
        started = time.monotonic()
        result = probes.mailbox_probe(mailbox, timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.diagnosis.category == "timeout" and "kept sending" in result.diagnosis.message
    assert elapsed < 1.0 + 1.5


@pytest.mark.parametrize(
    ("host", "errno", "hint"),
    [
        ("smtp.yandx.ru", socket.EAI_NONAME, "Check the spelling of the server name."),
        ("smtp.yandex.ru", socket.EAI_NONAME, "The name is right (it is the provider's own server): the network"),
        ("smtp.acme-mail.test", socket.EAI_AGAIN, "The name may well be right (the lookup failed"),
    ],
)
def test_a_failed_lookup_blames_the_spelling_only_when_the_name_may_be_wrong(tenant_a, monkeypatch, host, errno, hint):
    def lookup(name, *args, **kwargs):
        raise socket.gaierror(errno, "no answer")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)  # DNS is the public internet
    server = make_server(tenant_a, host=host, port=465, security="ssl")
    diagnosis = smtp_probe(server).diagnosis
    assert diagnosis.category == "dns" and diagnosis.hint.startswith(hint)


class NulBlacklisting(BlacklistingHandler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return "550 5.7.1 Service unavailable;\x00 client host blocked"


def test_a_nul_byte_in_a_servers_refusal_is_kept_as_a_replacement_character(tenant_a):
    """No PostgreSQL text can hold a NUL: the server's health error keeps
    U+FFFD in its place rather than failing to be saved."""
    server = make_server(tenant_a)
    with smtp_server(handler=NulBlacklisting()) as (controller, _):
        server.port = controller.port
        result = smtp_probe(server)
    assert "Service unavailable;\ufffd client host blocked" in result.diagnosis.message
    services.record_health(record=server, result=result)
    server.refresh_from_db()
    assert "\ufffd client host blocked" in server.health_error
