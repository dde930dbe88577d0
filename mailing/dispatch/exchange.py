"""One letter's SMTP exchange: MAIL, RCPT, DATA, the body and the final
dot, as smtplib.sendmail does, with five differences:

- the previous letter's result must be committed before this one is
  accepted (the commit overlaps this letter's round trips);
- while the server takes the letter (after the final dot), the batch makes
  its next one (`meanwhile`);
- a server that offers PIPELINING (RFC 2920; the big providers do) gets
  MAIL, RCPT and DATA in one write: one round trip instead of three; and
  the next letter's MAIL, RCPT and DATA go in the same write as this
  letter's final dot (RFC 2920 §3.1 allows it: the content may be the first
  "command" of a group), so a letter costs one round trip, not two;
- addresses go as IDNA, and a non-ASCII local part with SMTPUTF8 when the
  server offers it (RFC 6531); without it a recipient's fails its letter,
  a sender's (MAIL FROM, From, Reply-To) the server (SenderNeedsSmtpUtf8);
- a server that offers SIZE (RFC 1870) is told the letter's size in MAIL
  FROM, as smtplib.sendmail does, and one above the maximum it announces
  is not sent at all (TooBig): it would be refused after its whole body."""

import smtplib
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

from servers.connections import PinnedSMTPClient
from servers.errors import server_words
from servers.wire import utf8_options, wire_address

from .recorder import Recorder, RecordingFailed
from .replies import Stage


class Refusal(Exception):
    """The server refused the letter at `stage` with `code` and `reply`."""

    def __init__(self, code: int, reply: str, stage: Stage) -> None:
        super().__init__(f"{reply} (at {stage})")
        self.code, self.reply, self.stage = code, reply, stage


class MinuteOver(Exception):
    """The minute the room was reserved in ended before the final dot: the
    letter was not given to the server (the connection is closed)."""


class TooBig(ValueError):
    """The letter is larger than the maximum the server announces (SIZE)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} > {limit}")
        self.size, self.limit = size, limit


@dataclass
class Progress:
    """How far one letter got: MAIL (nothing of it reached the server yet),
    RCPT, DATA or DOT. From DATA on it counts against the limit: the server
    may have taken it. `accept_before` (time.monotonic()) is when the final
    dot may no longer go: a server's max per minute counts clock minutes."""

    stage: Stage = Stage.MAIL
    accept_before: float | None = None
    then_sent: bool = False  # the next letter's envelope went with this one's final dot

    @property
    def handed(self) -> bool:
        return self.stage in (Stage.DATA, Stage.DOT)


def envelope(
    client: smtplib.SMTP,
    sender: str,
    recipient: str,
    *,
    utf8: bool = False,
    size: int | None = None,
) -> list[bytes]:
    """The MAIL, RCPT and DATA commands; UnsendableAddress when this server
    cannot take this recipient, TooBig when it cannot take a letter of
    `size` (wire_size). `utf8`: a sender-side mailbox (the envelope
    sender, From, Reply-To) is not ASCII, as servers.wire.check_sender_side
    found it, once a letter, before the letter was made (where the server
    lacks SMTPUTF8 that is the server's problem, not this recipient's)."""
    mail, rcpt = wire_address(sender), wire_address(recipient)
    parameters = utf8_options(client, mail.utf8 or rcpt.utf8 or utf8) + size_options(client, size)
    options = "".join(f" {option}" for option in parameters)
    return [
        b"MAIL FROM:<" + mail.text.encode() + b">" + options.encode(),
        b"RCPT TO:<" + rcpt.text.encode() + b">",
        b"DATA",
    ]


def pipelines(client: smtplib.SMTP) -> bool:
    return client.does_esmtp and client.has_extn("pipelining")


def offers_size(client: smtplib.SMTP) -> bool:
    return client.does_esmtp and client.has_extn("size")


def mail_max(client: smtplib.SMTP) -> int | None:
    """The letters (transactions) the server takes a connection, as its
    EHLO's LIMITS says (RFC 9422: "LIMITS MAILMAX=1000 RCPTMAX=100", Exim
    4.95 and later): the batch opens a new connection before it, rather
    than meet the server's refusal; None when it names none."""
    words = client.esmtp_features.get("limits", "").split() if client.does_esmtp else []
    for word in words:
        name, _, value = word.partition("=")
        if name.upper() == "MAILMAX" and value.isascii() and value.isdigit() and int(value) > 0:
            return int(value)
    return None


def announced_size(client: smtplib.SMTP) -> int | None:
    """The largest letter the server takes, as its EHLO says ("SIZE
    10240000"); None when it names none ("SIZE" alone, or "SIZE 0": no
    fixed maximum, RFC 1870 §4). Anything but ASCII digits names none:
    smtplib reads the EHLO as Latin-1, and "²" is a digit to isdigit()
    but not to int()."""
    words = client.esmtp_features.get("size", "").split()
    if not words or not (words[0].isascii() and words[0].isdigit()):
        return None
    return int(words[0]) or None


def size_options(client: smtplib.SMTP, size: int | None) -> list[str]:
    """MAIL FROM's SIZE parameter where the server offers it (and did not
    refuse it on this connection: size_refused); TooBig above its maximum,
    refused parameter or not: the 555 refuses the parameter, not the
    maximum, and a letter above it would be refused after its whole body."""
    if size is None or not offers_size(client):
        return []
    limit = announced_size(client)
    if limit is not None and size > limit:
        raise TooBig(size, limit)
    if getattr(client, "size_refused", False):
        return []
    return [f"SIZE={size}"]


def refuses_size(client: smtplib.SMTP, refusal: "Refusal") -> bool:
    """The server offered SIZE but refused MAIL FROM for its parameters
    (555, RFC 5321 §4.2.3: "parameters not recognized or not implemented";
    some appliances, and servers behind a filter that announces what the
    server behind it lacks): once a connection, the letter goes again
    without SIZE (size_refused) rather than the server be taken out as if
    it refused our sender."""
    if refusal.stage != Stage.MAIL or refusal.code != 555:
        return False
    if not offers_size(client) or getattr(client, "size_refused", False):
        return False
    client.size_refused = True  # type: ignore[attr-defined]
    return True


def wire_size(data: bytes) -> int:
    """The size RFC 1870 §4 means: the octets sent after the 354, CRLFs
    included, without the final dot or the doubled dots; exchange() ends
    the letter with a CRLF when it has none."""
    return len(data) if data.endswith(b"\r\n") else len(data) + 2


def exchange(
    client: PinnedSMTPClient,
    commands: list[bytes],
    data: bytes,
    recorder: Recorder,
    progress: Progress,
    *,
    meanwhile: Callable[[], None] | None = None,
    sent: bool = False,
    then: list[bytes] | None = None,
) -> str:
    """Send one letter; the server's final reply, or Refusal. `meanwhile`
    runs once the final dot has gone, while the server takes the letter
    (it must not raise). `sent`: this letter's MAIL, RCPT and DATA already
    went with the previous letter's final dot; only their replies are read.
    `then`: the next letter's, to go with this one's final dot on a server
    that offers PIPELINING (`progress.then_sent` tells whether they went;
    the batch reads their replies in that letter's turn, or `abandon`s them)."""
    pipelined = pipelines(client)
    if sent:
        read = client.getreply
    elif pipelined:
        client.send(b"".join(c + b"\r\n" for c in commands))
        read = client.getreply
    else:

        def read() -> tuple[int, bytes]:
            client.send(commands.pop(0) + b"\r\n")
            return client.getreply()

    _expect(client, read(), (250,), Stage.MAIL, pending=2 if pipelined or sent else 0)
    progress.stage = Stage.RCPT
    _expect(client, read(), (250, 251), Stage.RCPT, pending=1 if pipelined or sent else 0)
    progress.stage = Stage.DATA
    _expect(client, read(), (354,), Stage.DATA)
    # The body as smtplib.data() sends it, but the server accepts the letter
    # only at the final dot: the previous result is committed before that.
    body = stuffed(data)
    body = body if body.endswith(b"\r\n") else body + b"\r\n"
    # The next letter's envelope rides with the final dot: the server's
    # replies to both come back in one round trip.
    tail = b"".join(c + b"\r\n" for c in then) if then and pipelined else b""
    in_time = progress.accept_before is None or time.monotonic() < progress.accept_before
    if in_time and recorder.idle():
        # The previous result is already committed (the usual case: its
        # commit ran during this letter's round trips): body and dot in one
        # write.
        progress.stage = Stage.DOT
        progress.then_sent = bool(tail)
        client.send(body + b".\r\n" + tail)
        return _accepted(client, meanwhile, then_sent=progress.then_sent)
    client.send(body)
    try:
        recorder.wait_for_previous()
    except RecordingFailed:
        client.close()  # without the final dot the server drops this letter
        raise
    if progress.accept_before is not None and time.monotonic() >= progress.accept_before:
        client.close()
        raise MinuteOver
    progress.stage = Stage.DOT
    progress.then_sent = bool(tail)
    client.send(b".\r\n" + tail)
    return _accepted(client, meanwhile, then_sent=progress.then_sent)


def stuffed(data: bytes) -> bytes:
    """Every line's leading dot doubled (RFC 5321 §4.5.2): what smtplib's
    multiline regular expression does (a line starts after a LF), for a
    sixth of its cost, since the regular expression tries every position
    of the letter: 110 µs of a 20 KB letter's CPU."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data[:1] == b"." else data


def _accepted(client: PinnedSMTPClient, meanwhile: Callable[[], None] | None, *, then_sent: bool) -> str:
    """The server's reply to the final dot: the letter's, kept as text.
    With the next letter's envelope behind the dot (`then_sent`), a refused
    letter needs no RSET (its transaction ended with the reply, RFC 5321
    §4.1.1.4), and one after the next letter's DATA would be a line of it."""
    if meanwhile is not None:
        with client.not_counting():  # the server's time is for its reply, not for our making
            meanwhile()
    code, raw = client.getreply()
    if code != 250:  # another 2xx took it too (RFC 5321 §4.2.1)
        _expect(client, (code, raw), TAKEN, Stage.DOT, reset=not then_sent)
    return text(code, raw)


TAKEN = range(200, 300)


# The class of reply that cannot answer a stage: DATA is answered 354 or
# refused, never 2xx; MAIL, RCPT and the final dot never 3xx (a 354 there
# answers a DATA: the server is in DATA mode).
OUT_OF_STEP = {Stage.MAIL: 3, Stage.RCPT: 3, Stage.DATA: 2, Stage.DOT: 3}


def _expect(
    client: smtplib.SMTP,
    answer: tuple[int, bytes],
    ok: Container[int],
    stage: Stage,
    pending: int = 0,
    *,
    reset: bool = True,
) -> None:
    """Refusal unless the reply is one of `ok` (whose text, for the replies
    before the final dot, nobody keeps). A reply no server gives at this
    stage means the stream is a reply behind (the server said one too many
    earlier): the server may be in DATA mode, where RSET would be a line of
    the message, so the connection is closed and the letter is lost with it."""
    code, raw = answer
    if code in ok:
        return
    reply = text(code, raw)
    if code // 100 == OUT_OF_STEP.get(stage):
        client.close()
        raise smtplib.SMTPServerDisconnected(f"a reply out of step with the commands at {stage}: {reply}")
    if stage == Stage.DOT and not 400 <= code < 600:
        # Neither taken nor refused (999, 1xx, words without a code): the
        # letter's fate is unknown, as when the server hangs up here.
        client.close()
        raise smtplib.SMTPServerDisconnected(f"a reply that neither takes nor refuses the letter: {reply}")
    if reset:
        rset(client, pending=pending)
    elif code == 421:
        # The server hangs up: the batch goes on, if at all, over a new
        # connection; the next letter's replies, if any came, are read
        # first (abandon), to know whether it reached DATA.
        client.reconnect = True  # type: ignore[attr-defined]
    raise Refusal(code, reply, stage)


def abandon(client: smtplib.SMTP) -> bool:
    """The next letter's MAIL, RCPT and DATA went with the final dot, but
    the batch stops before that letter's turn: their replies are read and
    the connection closed, since after a 354 only the letter may follow,
    and a server takes nothing without its final dot. True when the server
    said 354 (or its replies could not be read on an open connection):
    the letter counts as handed, as a loss in DATA does (Progress.handed).
    A connection already closed took nothing after its last reply."""
    if not client.sock:
        return False
    try:
        replies = [client.getreply()[0] for _ in range(3)]
    except (OSError, smtplib.SMTPException) as exc:
        client.close()
        # Hung up: it read nothing more. Silent (or a reply too long): it
        # may have read the DATA.
        return silent(exc) or not isinstance(exc, smtplib.SMTPServerDisconnected)
    client.close()
    return replies[-1] == 354


def silent(exc: BaseException) -> bool:
    """The server did not answer in time (the deadline, or a socket timeout
    as smtplib's getreply wraps it), where it did not hang up."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)


def rset(client: smtplib.SMTP, *, pending: int = 0) -> None:
    """Reset after a refusal. `pending` replies (to pipelined commands sent
    after the refused one) are read first, and a DATA the server took anyway
    gets an empty message. A server that said 421 has already hung up: its
    reply, not the hang-up, is what the letter keeps, and a 421 to one of the
    pending commands is kept on the client (`goodbye`) for the batch. A
    transaction that cannot be reset closes the connection (`reconnect`),
    and so does a server that hung up after a plain refusal (some do after
    a 5xx): the next letter goes over a new connection, rather than meet
    the closed one and rest the server as a lost connection would."""
    try:
        for index in range(pending):
            code, raw = client.getreply()
            if code == 421:  # the server hangs up after this refusal
                client.goodbye = text(code, raw)  # type: ignore[attr-defined]
                client.close()
                return
            if index == pending - 1 and code == 354:
                # DATA taken although a command before it was refused: a
                # lone dot (RFC 2920) would have a server that went on
                # regardless deliver an empty message, uncounted. Without
                # the final dot it takes nothing.
                _drop(client)
                return
        code, _ = client.rset()
        if code != 250:
            _drop(client)  # the transaction may still be open
    except (smtplib.SMTPServerDisconnected, OSError):
        _drop(client)


def _drop(client: smtplib.SMTP) -> None:
    """Hang up; the batch goes on over a new connection."""
    client.close()
    client.reconnect = True  # type: ignore[attr-defined]


def text(code: int, reply: bytes | str) -> str:
    return " ".join(f"{code} {server_words(reply)}".split())[:1000]
