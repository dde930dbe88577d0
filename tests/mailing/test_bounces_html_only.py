"""Reports whose own words come only as HTML: some appliances and hosted
gateways send their delivery report as one text/html part, or as an
alternative whose plain part is empty. Their words say who failed and
why as a plain report does; the reader takes them from the HTML's text
(no script or style, entities decoded, block elements as line breaks)."""

import threading
import uuid

import pytest

from mailing.bounces import parser, services, tokens
from mailing.models import BounceReport, Letter
from servers.models import BounceMailbox
from tests.mailing.bounce_helpers import sent_letters

K = BounceReport.Kind
BOUNCES = "bounces@acme.test"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


HTML = """<html><head><style>td {{ color: red }} .x:before {{ content: "550 5.7.1 <other@example.org>" }}</style>
<script>var x = "550 5.1.1 <other@example.org>";</script></head>
<body><p><b>Delivery has failed to these recipients or groups:</b></p>
<p><a href="mailto:{recipient}">{recipient}</a><br>
The email address you entered couldn&#39;t be found.</p>
<table><tr><td>Remote server returned</td>
<td>&#39;550 5.1.1 &lt;{recipient}&gt;: Recipient address rejected: User unknown&#39;</td></tr></table>
</body></html>"""


def html_only(to: str, recipient: str, *, alternative: bool = False) -> bytes:
    body = HTML.format(recipient=recipient)
    if not alternative:
        part = f"Content-Type: text/html; charset=utf-8\n\n{body}\n"
        return crlf(
            f"From: postmaster@gw.example.org\nTo: {to}\nSubject: Undeliverable: Hello there\n"
            f"Message-ID: <{uuid.uuid4()}@gw.example.org>\nMIME-Version: 1.0\n{part}"
        )
    return crlf(
        f"""From: postmaster@gw.example.org
To: {to}
Subject: Undeliverable: Hello there
Message-ID: <{uuid.uuid4()}@gw.example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="A1"

--A1
Content-Type: text/plain; charset=utf-8


--A1
Content-Type: text/html; charset=utf-8

{body}
--A1--
"""
    )


@pytest.mark.parametrize("alternative", [False, True])
def test_a_report_in_html_only_names_its_recipient_and_reason(alternative):
    parsed = parser.parse(html_only(BOUNCES, "jane@example.org", alternative=alternative))
    # Before: no recipient, no reason, kind unknown.
    assert parsed.recipients == ["jane@example.org"]
    assert parsed.kind == K.HARD
    assert "550 5.1.1" in parsed.diagnostic and "User unknown" in parsed.diagnostic
    assert "<script" not in parsed.diagnostic and "other@example.org" not in parsed.diagnostic


def test_a_plain_part_with_words_wins_over_the_html_beside_it():
    raw = html_only(BOUNCES, "jane@example.org", alternative=True).replace(
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n<jane@example.org>: 552 5.2.2 mailbox full\r\n",
    )
    parsed = parser.parse(raw)
    assert parsed.recipients == ["jane@example.org"] and "552 5.2.2" in parsed.diagnostic


@pytest.mark.django_db
def test_an_html_only_report_tied_by_the_token_bounces_its_letter(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    raw = html_only(tokens.address(BOUNCES, letter.public_id), letter.email)
    report = services.report_record(mailbox=mailbox, source_key=f"k-{uuid.uuid4()}", parsed=parser.parse(raw))
    letter.refresh_from_db()
    assert (report.kind, report.recipient) == (K.HARD, letter.email)
    assert letter.status == Letter.Status.BOUNCED and "User unknown" in letter.last_reply


@pytest.mark.parametrize("opener", ["<a ", '<a b="', "<script", "<!--", "<", "&#"])
def test_hostile_html_is_read_in_linear_time(opener):
    """Anyone can send a report: the stdlib's HTMLParser took 74 s of CPU
    for 100 KB of unclosed "<a "; two megabytes of any opener take well
    under a second here. Not a timing test: a quadratic reader would take
    hours, far past the minute given."""
    raw = html_only(BOUNCES, "jane@example.org").rstrip(b"\r\n") + (opener * (2_000_000 // len(opener))).encode()
    reading = threading.Thread(target=lambda: done.append(parser.parse(raw + b"\r\n")), daemon=True)
    done: list = []
    reading.start()
    reading.join(60)
    assert done, "the report was still being read after a minute"
    [parsed] = done
    assert parsed.recipients == ["jane@example.org"] and parsed.kind == K.HARD
