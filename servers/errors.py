"""What went wrong, in words a tenant understands (DOMAIN.md §7), with the
provider's own hint where one applies."""

import imaplib
import poplib
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy, gettext_noop

from . import charsets, presets
from .deadlines import DeadlineExceeded
from .netguard import HostRefused, HostUnresolved, ImapLoginUnavailable
from .wire import (
    SENDER_NEEDS_SMTPUTF8_HINT,
    SENDER_UNSENDABLE_HINT,
    SenderNeedsSmtpUtf8,
    SenderUnsendable,
    UnsendableAddress,
)
from .words import Param, Seconds, Words


def server_words(said: bytes | str) -> str:
    """What a server said, as text a database column can keep: UTF-8, or
    Russian in Windows-1251 or KOI8-R (old Windows and Kerio servers answer
    in their code page; servers.charsets); other bytes that are not UTF-8
    and NUL (which no PostgreSQL text holds; a hostile server may send it)
    become U+FFFD."""
    text = charsets.decode(said, None) if isinstance(said, bytes) else str(said)
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class Diagnosis:
    category: str  # auth, blacklisted, refused, timeout, tls_certificate, tls, dns, host_refused, rules, ...
    # Given as Words (servers.words), worded here in the active language;
    # `words` keeps them to word again for another reader.
    message: str
    hint: str = ""
    # Authentication and blacklisting take a server out of rotation (§7).
    disables_server: bool = False
    words: tuple[Words, Words] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        message, hint = Words.of(self.message), Words.of(self.hint)
        object.__setattr__(self, "words", (message, hint))
        # Both may quote the server (its reply, an exception's text).
        object.__setattr__(self, "message", server_words(str(message)))
        object.__setattr__(self, "hint", server_words(str(hint)))

    def words_json(self) -> dict[str, Any]:
        message, hint = self.words
        return {"message": message.to_json(), "hint": hint.to_json()}


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {server_words(exc.smtp_error)}".strip()


# Words that name the sending IP or host, or a DNS blocklist: a refusal of
# everyone who sends from here, not of one message.
LISTING = re.compile(
    r"blacklist|blocklist|block list|black list|blocked using|\blisted\b|\brbl\b|dnsbl|spamhaus|spamcop|barracuda"
    r"|sorbs|client host|\bip\b|ip address|your host|sender host|poor reputation",
    re.IGNORECASE,
)


# A server that does not pass mail on for us: no login, or a login that may
# not relay. Postfix "554 5.7.1 <r>: Relay access denied", Sendmail "550
# 5.7.1 <r>... Relaying denied", Exim "550 relay not permitted", Exchange
# "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain". Said
# at RCPT, it is about the server and the login, not the recipient.
RELAY_DENIED = re.compile(
    r"relay(ing)? (access )?(denied|not permitted|not allowed|prohibited)|unable to relay", re.IGNORECASE
)


# The login may not send from the letter's sender address: a setting of
# the server (its sender address, sender substitution), the same for every
# letter, said at MAIL FROM, at RCPT or after the message (the providers
# that check the From header). Postfix reject_sender_login_mismatch "553
# 5.7.1 <a@x>: Sender address rejected: not owned by user b@x", Yandex "553
# 5.7.1 Sender address rejected: not owned by auth user.", Mail.ru "550 not
# local sender over smtp", Microsoft 365 "554 5.2.0
# STOREDRV.Submission.Exception:SendAsDeniedException..." and "550 5.7.60
# SMTP; Client does not have permissions to send as this sender", Zoho "553
# Sender is not allowed to relay emails".
NOT_ITS_SENDER = re.compile(
    r"not owned by|not local sender|send ?as ?denied|permissions? to send as|not (allowed|permitted) to send as"
    r"|sender is not allowed to relay",
    re.IGNORECASE,
)


# The provider stopped the mailbox from sending (suspected spam or a
# break-in): no letter passes until its owner acts on the provider's
# website. Mail.ru "550 message sending for this account is disabled", Zoho
# "554 5.1.8 Email Outgoing Blocked.", Outlook.com "...OutboundSpamException;
# ... Actual verdict is Suspend" (its RefuseQuota is a quota: the dispatcher
# judges that first).
SENDING_STOPPED = re.compile(
    r"sending for this account is disabled|outgoing (mail |email )?(is )?blocked|outboundspamexception"
    r"|account (is |has been )?(suspended|blocked) (for|from) sending",
    re.IGNORECASE,
)


# A server that takes mail only after a login, or only encrypted, met
# without one (RFC 4954's "530 5.7.0 Authentication required", which some
# say with a 5.7.1; Gmail's and Exchange's "530 5.7.0 Must issue a STARTTLS
# command first"): the settings', never a blacklisting.
LOGIN_FIRST = re.compile(
    r"authentication (is )?required|must (authenticate|issue a starttls)|starttls (is )?required"
    r"|need(s)? authentication",
    re.IGNORECASE,
)


# A list that names a link inside the message (URIBL, SURBL, Spamhaus DBL
# asked about a link): a refusal of that message's content, which another
# letter without the link passes, not of the server that sent it. Unless
# the reply names the sender or the sending host (Postfix's
# reject_rhsbl_sender: "Sender address [...] blocked using
# dbl.spamhaus.org" refuses every letter from that address).
CONTENT_LISTING = re.compile(
    r"\buri(bl)?\b|surbl|\burls?\b|\blinks?\b|message contains|in (the )?(message )?body", re.IGNORECASE
)
SENDER_NAMED = re.compile(r"sender|client host|your host|\bhelo\b|\bip\b|ip address", re.IGNORECASE)


def is_blacklisting(code: int, text: str, *, at_recipient: bool = False) -> bool:
    """A refusal of the sending IP or account. At MAIL FROM (and in the
    connection test) a bare 5.7.1 or "spam rejected" refuses the sender
    itself (Rambler's blacklisting, DOMAIN.md §6). Once a recipient or a
    message is on the table, only words naming the IP, the host or a list
    count: "554 5.7.1 Message rejected as spam" refuses that message, not
    the server (Postfix refuses a listed client at RCPT: "... blocked using
    zen.spamhaus.org"). A listed link in the message is its content's
    refusal (CONTENT_LISTING)."""
    if code < 500:
        return False
    if at_recipient and CONTENT_LISTING.search(text) and not SENDER_NAMED.search(text):
        return False
    if LISTING.search(text):
        return True
    return not at_recipient and ("spam" in text.lower() or "5.7.1" in text)


# Letter after letter refused as spam after the message (Yandex "554 5.7.1
# Message rejected under suspicion of SPAM", Mail.ru "550 spam message
# rejected", Gmail "550-5.7.1 ... likely unsolicited mail"): the dispatcher
# stops the tenant's server with these words (mailing.dispatch.rests).
SPAM_REFUSED = gettext_lazy("The server refuses the letters as spam (%(reply)s).")
SPAM_REFUSED_HINT = gettext_lazy(
    "The provider takes the letters' content, or the sender's reputation, for spam; each more letter "
    "would fail too, and the provider may block the mailbox. Check the template (links, images, wording, "
    "an unsubscribe link), that the sender's domain has SPF, DKIM and DMARC records, and send a test letter "
    "to yourself; then run Test connection to use the server again."
)


# Refusals that a setting of the server causes, the same for every letter:
# (category, its words in a 5xx, codes that are it whatever their words,
# the message, what to change).
SETTINGS_REFUSALS = (
    (
        "relay",
        RELAY_DENIED,
        (),
        gettext_lazy("The server does not pass mail on for this sender (%(reply)s)."),
        gettext_lazy(
            "Most servers relay only for a logged-in user: set the login and password, "
            "and send from an address that login may use."
        ),
    ),
    (
        "sender",
        NOT_ITS_SENDER,
        (),
        gettext_lazy("The server does not let this login send from this sender address (%(reply)s)."),
        gettext_lazy(
            "Free providers send only from the login's own mailbox: set the server's sender address to "
            "that mailbox and turn off sender substitution, or allow the login to send as the address "
            "on the server."
        ),
    ),
    (
        "login_required",
        LOGIN_FIRST,
        (530,),  # RFC 4954's "Authentication required"
        gettext_lazy("The server takes mail only after a login or over an encrypted connection (%(reply)s)."),
        gettext_lazy(
            "Set the login and password, and choose SSL/TLS on port 465 or STARTTLS on port 587 "
            "(the provider's settings say which)."
        ),
    ),
    (
        "sending_stopped",
        SENDING_STOPPED,
        (),
        gettext_lazy("The provider has stopped this mailbox from sending (%(reply)s)."),
        gettext_lazy(
            "Providers do this after suspected spam or a suspected break-in. Log in to the mailbox on "
            "the provider's website and follow its instructions (a new password, a confirmation of the "
            "mailbox), then run Test connection."
        ),
    ),
)


def _settings_refusal(code: int, reply: str) -> Diagnosis | None:
    """Said as a 4xx too: Postfix's default defer_unauth_destination says
    "454 4.7.1 <r>: Relay access denied", and no retry mends it."""
    for category, words, codes, message, hint in SETTINGS_REFUSALS:
        if code in codes or (code >= 400 and words.search(reply)):
            return Diagnosis(category, _w(message, reply=reply), Words.of(hint), True)
    return None


# A login refused because it came in clear, not because it was wrong: RFC
# 5530's PRIVACYREQUIRED, Dovecot's "Plaintext authentication disallowed on
# non-secure connections" (POP3 has no LOGINDISABLED to say so first).
CLEAR_LOGIN_REFUSED_RE = re.compile(
    r"PRIVACYREQUIRED|plaintext auth\w* (?:is )?(?:disallowed|disabled|not allowed)|must issue a STARTTLS|"
    r"STARTTLS (?:is )?required|TLS required",
    re.IGNORECASE,
)


# What a server said, as a diagnosis quotes it: IMAP and POP3 read lines of
# up to a megabyte (a message's line may be that long) and SMTP replies of
# 64 KB, but a page shows a refusal, and a column keeps it, far shorter.
QUOTED_MAX = 1000


def _w(sentence: "str | Promise", **params: Param) -> Words:
    """A sentence of the diagnosis, worded when it is read (servers.words);
    a text longer than QUOTED_MAX is cut there, with "…"."""
    return Words(Words.of(sentence).msgid, {name: _quoted(value) for name, value in params.items()})


def _quoted(value: Param) -> Param:
    if isinstance(value, str) and len(value) > QUOTED_MAX:
        return value[: QUOTED_MAX - 1] + "…"
    return value


def diagnose(exc: BaseException, *, host: str = "", port: int | None = None, timeout: float = 0) -> Diagnosis:
    provider = presets.for_host(host) if host else None
    where = f"{host}:{port}" if port else host
    if isinstance(exc, ValidationError):
        return Diagnosis("rules", " ".join(exc.messages))
    if isinstance(exc, SenderNeedsSmtpUtf8):  # no letter of this sender can go: the server's settings
        return Diagnosis("smtputf8", exc.words, Words(SENDER_NEEDS_SMTPUTF8_HINT), True)
    if isinstance(exc, SenderUnsendable):  # no letter of this sender can go through any server
        return Diagnosis("sender_address", exc.words, Words(SENDER_UNSENDABLE_HINT), True)
    if isinstance(exc, UnsendableAddress):  # this server cannot take this address (no SMTPUTF8)
        return Diagnosis("address", str(exc))
    if isinstance(exc, HostRefused):
        return Diagnosis("host_refused", str(exc), _w(gettext_noop("Use your provider's public SMTP server name.")))
    if isinstance(exc, HostUnresolved | socket.gaierror):
        return _unresolved(exc, host)
    if isinstance(exc, smtplib.SMTPAuthenticationError) and exc.smtp_code < 500:
        return Diagnosis(
            "temporary",
            _w(gettext_noop("The server cannot check the login now (%(reply)s)."), reply=_reply(exc)),
            _w(gettext_noop("Try again later.")),
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        hint = provider.auth_hint if provider and provider.auth_hint else presets.GENERIC_AUTH_HINT
        return Diagnosis(
            "auth",
            _w(gettext_noop("The server refused the login or password (%(reply)s)."), reply=_reply(exc)),
            Words.of(hint),
            True,
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(
            f"{rcpt}: {code} {msg.decode(errors='replace')}" for rcpt, (code, msg) in exc.recipients.items()
        )
        return Diagnosis(
            "recipient",
            _w(gettext_noop("The server refused the recipient: %(replies)s"), replies=replies),
            _w(gettext_noop("Check the address.")),
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc)
        if (diagnosis := _settings_refusal(exc.smtp_code, reply)) is not None:
            return diagnosis
        if is_blacklisting(exc.smtp_code, reply):
            hint = provider.blacklist_hint if provider and provider.blacklist_hint else presets.GENERIC_BLACKLIST_HINT
            return Diagnosis(
                "blacklisted",
                _w(gettext_noop("The server refuses mail from this sender or IP (%(reply)s)."), reply=reply),
                Words.of(hint),
                True,
            )
        if 400 <= exc.smtp_code < 500:
            return Diagnosis(
                "temporary",
                _w(gettext_noop("The server is busy or refused for now (%(reply)s)."), reply=reply),
                _w(gettext_noop("Try again later.")),
            )
        return Diagnosis("refused_command", _w(gettext_noop("The server refused: %(reply)s."), reply=reply))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _not_offered(exc)
    if isinstance(exc, ImapLoginUnavailable):
        return _imap_login_unavailable(exc)
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto) and CLEAR_LOGIN_REFUSED_RE.search(str(exc)):
        return _encryption_needed(pop3=isinstance(exc, poplib.error_proto))
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto):
        text = str(exc)
        if any(w in text.upper() for w in ("AUTH", "LOGIN", "PASSWORD", "CREDENTIALS")):
            hint = provider.auth_hint if provider and provider.auth_hint else presets.GENERIC_AUTH_HINT
            return Diagnosis(
                "auth",
                _w(gettext_noop("The mailbox refused the login or password (%(text)s)."), text=text),
                Words.of(hint),
            )
        return Diagnosis("protocol", _w(gettext_noop("The mail server answered with an error: %(text)s"), text=text))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Diagnosis(
            "tls_certificate",
            _w(
                gettext_noop("The certificate of %(host)s is not valid: %(value)s."),
                host=host,
                value=str(exc.verify_message or exc.reason),
            ),
            _w(gettext_noop("The server name must match its certificate; use the provider's exact server name.")),
        )
    if isinstance(exc, ssl.SSLError):
        return Diagnosis(
            "tls",
            _w(
                gettext_noop("The TLS handshake with %(where)s failed (%(value)s)."),
                where=where,
                value=str(exc.reason or exc),
            ),
            _w(gettext_noop("The security setting does not fit the port: 465 uses SSL/TLS, 587 uses STARTTLS.")),
        )
    if isinstance(exc, DeadlineExceeded):
        return Diagnosis(
            "timeout", exc.words(where or _w(gettext_noop("The server")), timeout or None), _deadline_hint(exc)
        )
    if isinstance(exc, SoftTimeLimitExceeded):
        return Diagnosis(
            "timeout",
            _w(
                gettext_noop("The work with %(where)s took longer than the worker allows and was stopped."), where=where
            ),
            _w(gettext_noop("Try again later; if it happens again, the server is too slow to use.")),
        )
    if isinstance(exc, TimeoutError | socket.timeout) or (
        isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc)
    ):
        return Diagnosis(
            "timeout",
            _w(gettext_noop("%(where)s did not answer within %(within)s."), where=where, within=Seconds(timeout)),
            _w(
                gettext_noop(
                    "A firewall may block the port, or the security setting does not fit the port (SSL on 587 hangs)."
                )
            ),
        )
    if isinstance(exc, ConnectionRefusedError):
        return Diagnosis(
            "refused",
            _w(gettext_noop("Nothing accepts connections on %(where)s."), where=where),
            _w(gettext_noop("Check the server name and port.")),
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | EOFError):
        return Diagnosis(
            "disconnected",
            _w(
                gettext_noop("%(where)s closed the connection unexpectedly (%(value)s)."),
                where=where,
                value=str(exc) if str(exc) else _w(gettext_noop("no reason")),
            ),
        )
    if isinstance(exc, OSError):
        return Diagnosis(
            "network",
            _w(gettext_noop("Could not reach %(where)s: %(value)s."), where=where, value=str(exc.strerror or exc)),
        )
    return Diagnosis("error", _w(gettext_noop("Unexpected error: %(exc)s"), exc=str(exc)))


# getaddrinfo's answers that say the lookup itself failed, not that the name does not exist.
DNS_DOWN = {getattr(socket, name) for name in ("EAI_AGAIN", "EAI_FAIL", "EAI_SYSTEM") if hasattr(socket, name)}


def _encryption_needed(*, pop3: bool = False) -> Diagnosis:
    return Diagnosis(
        "tls",
        _w(gettext_noop("The mail server accepts a login only over an encrypted connection.")),
        _w(gettext_noop("Choose STARTTLS on port 110 or SSL/TLS on port 995."))
        if pop3
        else _w(gettext_noop("Choose STARTTLS on port 143 or SSL/TLS on port 993.")),
    )


def _imap_login_unavailable(exc: ImapLoginUnavailable) -> Diagnosis:
    """LOGINDISABLED: before STARTTLS, the server takes no password in
    clear; after it (or on SSL/TLS), it wants a login Postroute does not do."""
    if not exc.encrypted:
        return _encryption_needed()
    if exc.mechanisms:
        offers = gettext_noop(
            "The mail server offers no login by password that Postroute can use (it offers: %(offered)s)."
        )
        message = _w(offers, offered=", ".join(exc.mechanisms))
    else:
        message = _w(gettext_noop("The mail server offers no login on this connection."))
    return Diagnosis(
        "auth_method",
        message,
        _w(
            gettext_noop(
                "Postroute logs in with LOGIN, AUTHENTICATE PLAIN or CRAM-MD5. Ask the mail server's administrator "
                "to allow one of them for this mailbox, or use the provider's app password."
            )
        ),
    )


def _not_offered(exc: smtplib.SMTPNotSupportedError) -> Diagnosis:
    """smtplib's English sentence names what the server's EHLO lacked: said
    again in the tenant's language, with what to change."""
    text = str(exc)
    if "STARTTLS extension" in text:
        return Diagnosis(
            "tls",
            _w(gettext_noop("The server does not offer STARTTLS on this port.")),
            _w(gettext_noop("Choose SSL/TLS on port 465 or none.")),
        )
    if "SMTP AUTH extension" in text:
        return Diagnosis(
            "tls",
            _w(gettext_noop("The server does not offer a login (AUTH) on this connection.")),
            _w(
                gettext_noop(
                    "Many servers offer it only on an encrypted connection: choose SSL/TLS on port 465 or STARTTLS "
                    "on port 587. A server that takes mail without a login needs the login left empty."
                )
            ),
        )
    return Diagnosis(
        "tls",
        _w(gettext_noop("The server does not offer that: %(exc)s."), exc=text.rstrip(".")),
        _w(gettext_noop("Choose SSL/TLS on port 465 or none.")),
    )


def _unresolved(exc: BaseException, host: str) -> Diagnosis:
    """A misspelt name, or a name that exists while this machine cannot
    look names up: a provider's own server name, or a lookup that failed
    rather than answered "no such name"."""
    message = _w(gettext_noop("The name %(host)s could not be found."), host=host)
    cause = exc if isinstance(exc, socket.gaierror) else exc.__cause__
    if presets.is_provider_host(host):
        hint = _w(
            gettext_noop(
                "The name is right (it is the provider's own server): the network or the DNS of the server "
                "Postroute runs on may be down. Try again in a few minutes; if it goes on, tell the administrator "
                "of this installation."
            )
        )
        return Diagnosis("dns", message, hint)
    if isinstance(cause, socket.gaierror) and cause.errno in DNS_DOWN:
        hint = _w(
            gettext_noop(
                "The name may well be right (the lookup failed, it did not say the name does not exist): "
                "the network or the DNS of the server Postroute runs on may be down. Try again in a few minutes; "
                "if it goes on, tell the administrator of this installation."
            )
        )
        return Diagnosis("dns", _w(gettext_noop("The name %(host)s could not be looked up."), host=host), hint)
    return Diagnosis("dns", message, _w(gettext_noop("Check the spelling of the server name.")))


def _deadline_hint(exc: DeadlineExceeded) -> Words:
    if exc.dribbling:
        return _w(
            gettext_noop(
                "The server sends its reply so slowly that it never ends (a broken or deliberately slow server). "
                "Check the server name and port; if they are right, ask the provider."
            )
        )
    if exc.doing == "send":
        return _w(gettext_noop("The server stopped reading what we sent; it may be overloaded. Try again later."))
    if exc.doing == "handshake":
        return _w(gettext_noop("The security setting may not fit the port: 465 uses SSL/TLS, 587 uses STARTTLS."))
    return _w(
        gettext_noop("A firewall may block the port, or the security setting does not fit the port (SSL on 587 hangs).")
    )
