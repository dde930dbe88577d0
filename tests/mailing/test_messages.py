"""The exact message of a letter, parsed back with the email package."""

import email
import email.header
import email.policy
import email.utils
import re
import unicodedata

import pytest

from mailing import mailings as services
from mailing.dispatch.messages import LETTER_HEADER, Builder, build_message
from mailing.models import Contact, Letter, Mailing
from tests.servers.factories import make_server

from .builders import make_list, make_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def letter(tenant_a):
    make_list(tenant_a, "L", ["ann@x.test"])
    Contact.objects.filter(email="ann@x.test").update(first_name="Ann <b>", fields={"city": "Tver"})
    template = make_template(
        tenant_a,
        subject="Hi {{ first_name }}",
        html_body="<p>Hi {{ first_name }}</p>",
        sender_email="ceo@acme.test",
        sender_name="Acme",
        reply_to="replies@acme.test",
    )
    mailing = Mailing(tenant=tenant_a, name="m", template=template)
    server = make_server(tenant_a, sender_email="box@yandex.test", sender_name="Box")
    services.mailing_save(mailing=mailing, lists=list(tenant_a.contact_lists.all()), servers=[server])
    services.mailing_start(mailing=mailing)
    return Letter.objects.select_related("mailing").get()


def parse(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def test_the_message_carries_the_headers_that_tie_bounces_and_unsubscribes(letter, tenant_a):
    server = letter.mailing.servers.get()
    msg = parse(build_message(letter, server))
    assert msg[LETTER_HEADER] == str(letter.public_id)
    assert msg["Message-ID"] == f"<{letter.public_id}@yandex.test>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<http") and "/u/" in msg["List-Unsubscribe"]
    assert msg["Reply-To"] == "replies@acme.test"
    assert msg["Subject"] == "Hi Ann <b>"
    assert "Hi Ann <b>" in msg.get_body(("plain",)).get_content()
    assert "Hi Ann &lt;b&gt;" in msg.get_body(("html",)).get_content()


def test_the_from_depends_on_the_server_that_sends(letter, tenant_a):
    plain = letter.mailing.servers.get()
    substituting = make_server(tenant_a, name="Own domain", sender_email="mx@acme.test", allow_sender_substitution=True)
    assert parse(build_message(letter, plain))["From"] == "Acme <box@yandex.test>"
    assert parse(build_message(letter, substituting))["From"] == "Acme <ceo@acme.test>"


def test_contact_data_cannot_inject_headers_through_the_subject(letter):
    letter.context["first_name"] = "Ann\r\nBcc: victim@example.test"
    msg = parse(build_message(letter, letter.mailing.servers.get()))
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"]


def test_non_ascii_names_and_subjects_are_encoded(letter, tenant_a):
    letter.context["first_name"] = "Иван"
    server = make_server(tenant_a, sender_email="box@yandex.test", sender_name="Магазин")
    msg = parse(build_message(letter, server))
    assert msg["Subject"] == "Hi Иван"
    assert msg["From"] == "Acme <box@yandex.test>"  # the template's name wins over the server's
    assert "Иван" in msg.get_body(("plain",)).get_content()


def test_a_line_break_in_any_header_value_is_refused(letter):
    from mailing.dispatch.messages import HeaderInjection

    letter.email = "ann@x.test\r\nBcc: victim@example.test"
    with pytest.raises(HeaderInjection):
        build_message(letter, letter.mailing.servers.get())


def test_a_script_in_the_template_never_reaches_the_letter(letter):
    mailing = letter.mailing
    mailing.html_body = "<p>Hi</p><script>alert(1)</script><p>Bye</p><Script src=x.js>"
    html = parse(build_message(letter, mailing.servers.get(), mailing)).get_body(("html",)).get_content()
    assert "<p>Hi</p><p>Bye</p>" in html and "script" not in html.lower()


ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def wire_of(letter) -> bytes:
    return Builder(letter.mailing.servers.get(), letter.mailing).wire(letter)


def test_encoded_words_in_the_subject_are_at_most_75_characters(letter):
    """RFC 2047 §2: a longer encoded word may be shown raw or refused; the
    one-line folding of long headers (998) made words of hundreds."""
    letter.context["first_name"] = "Иван Иванович " * 15 + "😀" * 40 + " Nguyễn Văn A"
    sent = wire_of(letter)
    subject = sent.split(b"\r\nSubject: ", 1)[1].split(b"\r\nDate: ", 1)[0]
    words = ENCODED_WORD.findall(subject)
    assert len(words) > 1 and max(len(word) for word in words) <= 75
    msg = email.message_from_bytes(sent, policy=email.policy.default)
    assert msg["Subject"] == "Hi " + letter.context["first_name"]


def test_a_subject_with_a_word_longer_than_a_line_is_folded_under_998_octets(letter):
    """SMTP refuses or cuts a line past 998 octets (RFC 5321 §4.5.3.1.6): a
    long value with no space in it (a code, a link) goes in encoded words."""
    letter.context["first_name"] = "x" * 1000
    sent = wire_of(letter)
    assert max(len(line) for line in sent.split(b"\r\n")) <= 998
    assert email.message_from_bytes(sent, policy=email.policy.default)["Subject"] == "Hi " + "x" * 1000


@pytest.mark.parametrize("value", ["=?utf-8?b?0JjQstCw0L0=?=", "Sale =?utf-8?q?=D0=98?= today"])
def test_a_value_that_looks_like_an_encoded_word_arrives_as_written(letter, value):
    """A mail client decodes "=?charset?b?…?=" in a Subject: contact data
    written so would be shown as something else than what it is."""
    letter.context["first_name"] = value
    assert email.message_from_bytes(wire_of(letter), policy=email.policy.default)["Subject"] == f"Hi {value}"


# What every letter must pass, whatever the tenant or the contacts wrote
# (RFC 5322 §2.1.1, RFC 2047 §2, RFC 5321 §4.5.3.1.6), checked on the bytes.
ROMASHKA = "Общество с ограниченной ответственностью «Ромашка» — отдел продаж"
VIETNAMESE = "Công ty Trách nhiệm Hữu hạn Thương mại và Dịch vụ Nguyễn Văn Hoàng Phương Nam"
SENDER_NAMES = [
    ROMASHKA,
    VIETNAMESE,
    "🎉" * 30 + " Акция",
    "Отдел" + "продаж" * 15,  # one word longer than an encoded word
    'Sales, "Acme" @ HQ — отдел',
    "Acme Corporation International Holdings, Sales Department and Other Teams",
    "=?utf-8?b?0JjQstCw0L0=?= Sales",
]


def strictly_checked(raw: bytes) -> email.message.Message:
    """Every header line at most 78 octets (one with an encoded word 76),
    every encoded word at most 75 characters, every line at most 998
    octets, no line of only spaces; then parsed by the email package's
    strict policy."""
    head = raw.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n"):
        assert line.strip(), line
        words = ENCODED_WORD.findall(line)
        # A value with no space to fold at (the unsubscribe link) stays whole.
        unbroken = b" " not in (line.strip() if line[:1] == b" " else line.partition(b": ")[2])
        assert len(line) <= (76 if words else 78) or (not words and unbroken), line
        assert all(len(word) <= 75 for word in words), line
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(raw, policy=email.policy.strict)
    for name in msg:
        assert not msg[name].defects, (name, msg[name].defects)
    return msg


def display_name(raw: bytes, header: str) -> str:
    """The name as an RFC 2047 reader decodes it (the email package's own
    modern parser puts a space between the words of a display name)."""
    value = re.sub(r"\r\n(?= )", "", email.message_from_bytes(raw, policy=email.policy.compat32)[header])
    phrase = value.rpartition("<")[0].strip()
    if not phrase.startswith("=?"):
        return email.utils.parseaddr(value)[0]
    return str(email.header.make_header(email.header.decode_header(phrase)))


@pytest.mark.parametrize(
    "name", SENDER_NAMES, ids=["ru", "vi", "emoji", "one long word", "specials", "ascii", "encoded-word look"]
)
@pytest.mark.parametrize("substitution", [False, True], ids=["server's address", "template's address"])
def test_a_long_sender_name_is_folded_in_short_encoded_words(letter, tenant_a, name, substitution):
    mailing = letter.mailing
    mailing.sender_name = name
    server = make_server(tenant_a, name="Own", sender_email="box@acme.test", allow_sender_substitution=substitution)
    raw = Builder(server, mailing).wire(letter)
    msg = strictly_checked(raw)
    assert display_name(raw, "From") == name
    assert msg["From"].addresses[0].addr_spec == ("ceo@acme.test" if substitution else "box@acme.test")


@pytest.mark.parametrize(
    "subject",
    [ROMASHKA * 2, "🎉 Скидки! 🎉 " * 3, VIETNAMESE + " {{ first_name }}", "Hi " * 60],
    ids=["ru", "emoji", "vi", "ascii"],
)
def test_a_long_subject_passes_the_strict_check(letter, subject):
    letter.mailing.subject = subject
    msg = strictly_checked(wire_of(letter))
    assert msg["Subject"] == subject.replace("{{ first_name }}", "Ann <b>").strip()  # the form strips it too


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_vietnamese_typed_decomposed_goes_out_composed(letter, tenant_a):
    """A Mac, a Vietnamese keyboard (Unikey's combining mode) or a paste
    from a PDF gives "ễ" as "e" and two combining marks: older Outlook
    shows the marks beside the letter, and a search typed composed does
    not find it. The letter is the same whichever form was typed."""
    composed = {
        "subject": "Ưu đãi cho {{ first_name }} — Nguyễn",
        "text_body": "Xin chào {{ first_name }}, tiếng Việt: ễ ộ ứ",
        "html_body": "<p>Xin chào {{ first_name }} — Hoàng Phương</p>",
        "sender_name": "Công ty Trách nhiệm Hữu hạn",
    }
    letters = []
    for form in (nfd, str):
        mailing = letter.mailing
        for field, value in composed.items():
            setattr(mailing, field, form(value))
        letter.context["first_name"] = form("Thị Hồng")
        server = make_server(tenant_a, name=f"S{len(letters)}", sender_email="box@acme.test")
        letters.append(strictly_checked(Builder(server, mailing).wire(letter)))
    decomposed, written = letters
    for msg in letters:
        assert unicodedata.is_normalized("NFC", str(msg["Subject"]))
    for part in ("plain", "html"):
        body = decomposed.get_body((part,)).get_content()
        assert body == written.get_body((part,)).get_content() and unicodedata.is_normalized("NFC", body)
    assert decomposed["Subject"] == written["Subject"] == "Ưu đãi cho Thị Hồng — Nguyễn"
    assert decomposed.get("From") == written.get("From")
