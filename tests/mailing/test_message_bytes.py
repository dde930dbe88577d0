"""What the dispatcher sends (Builder.wire, written directly) is what the
email package's generator writes for the same letter (Builder.message(...)
.as_bytes(policy=WIRE), as build_message gives it), byte for byte, and a
letter one refuses the other refuses with the same error: over letters
generated from every shape that reaches the builder."""

import random
import time
import uuid
from email.utils import formatdate

import pytest

from mailing.dispatch.messages import WIRE, Builder, HeaderInjection, build_message
from mailing.models import Letter, Mailing
from servers.models import SmtpServer

NOW = 1767225600.75

NAMES = [
    "",
    "Ann",
    "Иван",
    "Nguyễn Thị Minh Khai",
    'O"Brien, Jr. (Sales)',
    "x" * 300,
    "Петров " * 40,
]
SUBJECTS = [
    "",
    "Hello {{ first_name }}",
    "Здравствуйте, {{ first_name }} {{ last_name }}!",
    "Xin chào {{ first_name }}, ưu đãi tháng này",
    "A long subject that needs folding, " * 6 + "{{ first_name }}",
    "Новости недели для вас, {{ first_name }}: " * 4,
    "{{ city }}",
]
TEXTS = [
    "",
    "Hi {{ first_name }}! Unsubscribe: {{ unsubscribe_url }}",
    "Hi {{ first_name }},\r\n.\r\n..two dots\r\n.{{ last_name }}\r\nbye\r\n",
    "Lone\rcarriage\rreturns\n\nand = signs, trailing spaces   \nFrom the start\n",
    "Привет, {{ first_name }}!\n" + "Длинная строка без переносов " * 12 + "\n{{ city }}\n{{ unsubscribe_url }}",
    "Tiếng Việt: {{ first_name }}\n" + "word " * 60,
]
HTMLS = [
    "",
    "<p>Hi {{ first_name }}</p>",
    '<html><body><p>Привет, {{ first_name }}!</p><a href="{{ unsubscribe_url }}">Отписаться</a></body></html>',
    "<p>.{{ last_name }}</p>\r\n.\r\n<script>alert(1)</script><p>=3D {{ city }}</p>" + "<br>" * 40,
]
ADDRESSES = [
    "ann@example.test",
    "Ivan.Petrov+news@example.test",
    "ivan@пример.рф",
    "hoa@bücher.example",
    "josé@example.test",
    "",
    "a" * 64 + "@" + "b" * 63 + ".example.test",
]
# What a header must refuse, in a few letters' fields.
HOSTILE = ["Ann\r\nBcc: victim@example.test", "tab\there", "ann@x.test\x07", "ann@x.test\u2029"]
VALUES = [
    "",
    "Ann",
    "Иван",
    "Nguyễn",
    "<b>&amp;</b>",
    "line\r\nbreak",
    "nul\x00and\x07bell",
    "{{ first_name }}",
    ".dot",
    "y" * 1200,
    "\u2028sep",
]


def pick(rng: random.Random, values: list[str]) -> str:
    return rng.choice(HOSTILE) if rng.random() < 0.03 else rng.choice(values)


def make_letter(rng: random.Random) -> tuple[Letter, SmtpServer, Mailing, str]:
    server = SmtpServer(
        sender_email=pick(rng, [*ADDRESSES[:4], "box@example.test"]),
        sender_name=pick(rng, NAMES),
        allow_sender_substitution=rng.random() < 0.5,
    )
    mailing = Mailing(
        subject=rng.choice(SUBJECTS),
        text_body=rng.choice(TEXTS),
        html_body=rng.choice(HTMLS),
        sender_email=pick(rng, ["", "", *ADDRESSES]),
        sender_name=pick(rng, NAMES),
        reply_to=pick(rng, ["", "", *ADDRESSES]),
    )
    context = {key: rng.choice(VALUES) for key in ("first_name", "last_name", "city") if rng.random() < 0.8}
    letter = Letter(
        tenant_id=rng.randrange(1, 10**6),
        email=pick(rng, ADDRESSES),
        context=context,
        public_id=uuid.UUID(int=rng.getrandbits(128), version=4),
    )
    return letter, server, mailing, rng.choice(["", "", "replies@example.test", "ответ@пример.рф"])


def outcome(build, seed: int):
    """The bytes built, or the error raised, with the multipart boundary
    drawn from the same random state."""
    random.seed(seed)
    try:
        return build()
    except Exception as exc:
        return type(exc), str(exc)


@pytest.fixture
def frozen(monkeypatch):
    """The clock of the Date header and the unsubscribe token."""
    monkeypatch.setattr(time, "time", lambda: NOW)


def test_the_bytes_sent_are_the_generators_byte_for_byte(frozen):
    rng = random.Random(20261203)
    seen = {"html": 0, "text": 0, HeaderInjection: 0, "folded": 0, "utf-8 sender": 0}
    for seed in range(2000):
        letter, server, mailing, reply_to = make_letter(rng)
        expected = outcome(
            lambda: build_message(letter, server, mailing, reply_to=reply_to).as_bytes(policy=WIRE), seed
        )
        assert outcome(lambda: Builder(server, mailing, reply_to=reply_to).wire(letter), seed) == expected, seed
        if isinstance(expected, bytes):
            seen["html" if mailing.html_body else "text"] += 1
            headers = expected.partition(b"\r\n\r\n")[0]
            seen["folded"] += b"\r\n " in headers
            # A From or Reply-To mailbox that is not ASCII, in UTF-8 (RFC 6532).
            seen["utf-8 sender"] += any(
                line.startswith((b"From:", b"Reply-To:")) and not line.isascii() for line in headers.split(b"\r\n")
            )
        else:
            seen[expected[0]] += 1
    # Every shape was met, often.
    assert min(seen.values()) >= 50, seen


def plain_letter(html_body: str = "") -> tuple[Letter, SmtpServer, Mailing]:
    letter = Letter(tenant_id=1, email="ann@x.test", context={"first_name": "Ann"})
    mailing = Mailing(subject="Hi {{ first_name }}", text_body="Hi", html_body=html_body)
    return letter, SmtpServer(sender_email="box@x.test", sender_name="Box"), mailing


def wire(letter: Letter, server: SmtpServer, mailing: Mailing) -> bytes:
    return Builder(server, mailing).wire(letter)


def test_the_date_is_the_time_of_building(monkeypatch):
    for now in (NOW, NOW + 0.1, NOW + 1, NOW + 3600):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        assert f"\r\nDate: {formatdate(now)}\r\n".encode() in wire(*plain_letter())


def test_a_multipart_boundary_is_drawn_anew_for_every_letter():
    letter, server, mailing = plain_letter("<p>Hi</p>")
    builder = Builder(server, mailing)
    first, second = builder.wire(letter), builder.wire(letter)
    assert b'Content-Type: multipart/alternative;\r\n boundary="===============' in first
    assert first.split(b"boundary=")[1][:40] != second.split(b"boundary=")[1][:40]
