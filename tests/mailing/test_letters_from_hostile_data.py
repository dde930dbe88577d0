"""Letters made from data nobody here wrote: contacts pushed through the
API's bulk upsert as a CRM sends them, rendered into the template, sent by
the dispatcher to a real aiosmtpd server, and read back from the bytes it
received as a receiver reads them (every line at most 998 octets, no header
line of only spaces, the Subject as it was rendered)."""

from html.parser import HTMLParser

import pytest

from mailing import mailings as services
from mailing.models import ContactList, Letter, Mailing
from servers.models import BounceMailbox
from tests.api.conftest import make_api
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .builders import make_template
from .builders import run_until_settled as settle
from .test_messages import strictly_checked

pytestmark = pytest.mark.django_db


def send(tenant, person, contacts: list[dict], **template) -> list[bytes]:
    """`contacts` pushed through POST /api/v1/contacts/bulk/, a mailing of
    `template` to them sent to a real SMTP server: the letters it received."""
    contact_list = ContactList.objects.create(tenant=tenant, name="CRM")
    answer = make_api(tenant, by=person.user).post(
        "/api/v1/contacts/bulk/", {"list": str(contact_list.public_id), "contacts": contacts}
    )
    assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.content
    with smtp_server() as (controller, handler):
        server = make_server(tenant, port=controller.port)
        mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant, **template))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        services.mailing_start(mailing=mailing)
        assert settle(mailing) == "done"
    assert set(Letter.objects.filter(mailing=mailing).values_list("status", flat=True)) == {Letter.Status.SENT}
    return [received.data for received in handler.received]


CITIES = ["Kazan", "Volgograd", "Saint Petersburg"]


def test_a_long_subject_ending_in_an_empty_placeholder_has_no_header_line_of_only_a_space(tenant_a, alice):
    """The Subject is folded before a space where a line would pass 78
    characters. Ending in the space before a placeholder this contact has
    no value for, it was folded before that space when the city ended the
    line at column 78 (Volgograd's): the space alone on a continuation
    line, obsolete syntax (RFC 5322 §4.2) that strict receivers refuse and
    some take for the end of the headers."""
    contacts = [{"email": f"c{i}@x.test", "fields": {"city": city}} for i, city in enumerate(CITIES)]
    subject = "Special offers and discounts this week for our customers in {{ city }} {{ district }}"
    letters = send(tenant_a, alice, contacts, subject=subject)
    subjects = {strictly_checked(raw)["Subject"] for raw in letters}
    assert subjects == {f"Special offers and discounts this week for our customers in {city}" for city in CITIES}


def test_an_empty_placeholder_at_either_end_of_the_subject_leaves_no_space_there(tenant_a, alice):
    """The space beside an empty placeholder at the start or the end of
    the Subject went out with it (the one at the end kept by receivers),
    and a trailing one filled the Subject's line past 78 characters, or was
    written alone on a line of its own."""
    contacts = [{"email": "ann@x.test", "fields": {"code": "X" * 50}}]
    [raw] = send(tenant_a, alice, contacts, subject="{{ first_name }} Your code: {{ code }} {{ last_name }}")
    assert b"\r\nSubject: Your code: " + b"X" * 50 + b"\r\n" in raw
    assert strictly_checked(raw)["Subject"] == "Your code: " + "X" * 50


def test_a_field_with_a_long_run_of_spaces_keeps_the_subject_under_998_octets_a_line(tenant_a, alice):
    """A value pasted from a fixed-width export: a thousand characters, most
    of them spaces. The folding, at spaces only, put the whole run and the
    word after it on one line past SMTP's 998 (RFC 5321 §4.5.3.1.6)."""
    note = "N" + " " * 996 + "A12"
    [raw] = send(tenant_a, alice, [{"email": "ann@x.test", "fields": {"note": note}}], subject="Re: {{ note }}")
    assert strictly_checked(raw)["Subject"] == "Re: " + note


class StartTags(HTMLParser):
    """The elements a mail client's HTML parser would open."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


@pytest.mark.parametrize(
    "html",
    [
        "<p>Hi</p><scr<script>x</script>ipt>alert(1)</script><p>Bye</p>",
        "<p>Hi</p><SCR<script></script><script></script>IPT src=https://evil.test/x.js></script><p>Bye</p>",
        "<p>Hi</p><scr{{ city }}ipt>alert(1)</script><p>Bye</p>",
    ],
    ids=["one inside another", "two inside another", "joined by an empty placeholder"],
)
def test_no_script_reaches_the_letter_however_the_template_hides_it(tenant_a, alice, html):
    """Postroute promises at save that a letter carries no <script> (mail
    clients remove them). Taken out in one pass, a script written inside
    another's tag name joined the halves around it into a new one, which
    went out in every letter."""
    [raw] = send(tenant_a, alice, [{"email": "ann@x.test"}], html_body=html)
    body = strictly_checked(raw).get_body(("html",)).get_content()
    assert body.startswith("<p>Hi</p>") and body.rstrip().endswith("<p>Bye</p>")
    assert "script" not in StartTags(body).tags


def test_an_envelope_sender_tagged_for_a_mailbox_that_is_not_ascii_keeps_to_64_octets(tenant_a, alice):
    """A local part may have 64 octets, in UTF-8 with SMTPUTF8 too (RFC
    5321 §4.5.3.1.1, RFC 6531 §3.3), as the address checks count them. The
    token tag (+ and 34 characters) was measured in characters: a Cyrillic
    bounce mailbox's tagged MAIL FROM passed 64 octets, which a receiver
    may refuse for every letter. Too long so, it goes untagged."""
    mailbox = "отчёты.о.доставке@пример.рф"  # 17 characters, 32 octets before the @
    BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=mailbox, email=mailbox)
    contact_list = ContactList.objects.create(tenant=tenant_a, name="CRM")
    make_api(tenant_a, by=alice.user).post(
        "/api/v1/contacts/bulk/", {"list": str(contact_list.public_id), "contacts": [{"email": "ann@x.test"}]}
    )
    with smtp_server(enable_SMTPUTF8=True) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=True)
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a, sender_email="ceo@acme.test"))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        services.mailing_start(mailing=mailing)
        assert settle(mailing) == "done"
    [received] = handler.received
    local = received.mail_from.rpartition("@")[0]
    assert len(local.encode()) <= 64 and received.mail_from == "отчёты.о.доставке@xn--e1afmkfd.xn--p1ai"


HEADERS = {
    *("Content-Type", "MIME-Version", "From", "To", "Subject", "Date", "Message-ID"),
    *("X-Postroute-Letter", "List-Unsubscribe", "List-Unsubscribe-Post"),
}
# A custom field's value as a CRM sends it, and the Subject a receiver reads.
VALUES = [
    ("Tver\r\nBcc: victim@x.test", "Tver Bcc: victim@x.test"),
    ("Tver\rX-Spam: no\x85\u2028\u2029\x0b\x0c end", "Tver X-Spam: no  end"),
    ("=?utf-8?b?0JjQstCw0L0=?=", "=?utf-8?b?0JjQstCw0L0=?="),
    ("{{ email }} {{ unsubscribe_url }}", "{{ email }} {{ unsubscribe_url }}"),
    ("Nguye\u0302\u0303n 😀 \u202eevil", "Nguyễn 😀 \u202eevil"),
]


def test_contact_data_of_every_kind_arrives_as_written_on_one_line_and_adds_nothing(tenant_a, alice):
    """What was fine, kept so: line breaks of every kind become spaces in
    the Subject and stay in the body, a value that looks like an encoded
    word or a placeholder is shown as written, a decomposed Vietnamese
    value goes out composed, and no header is added."""
    contacts = [{"email": f"c{i}@x.test", "fields": {"city": value}} for i, (value, _) in enumerate(VALUES)]
    letters = send(tenant_a, alice, contacts, subject="Re: {{ city }}", text_body="[{{ city }}]\nBye")
    by_recipient = {}
    for raw in letters:
        message = strictly_checked(raw)
        assert set(message.keys()) == HEADERS
        by_recipient[str(message["To"])] = message
    for i, (_value, subject) in enumerate(VALUES):
        assert by_recipient[f"c{i}@x.test"]["Subject"] == f"Re: {subject}"
    line_breaks = by_recipient["c0@x.test"].get_body(("plain",)).get_content()
    assert line_breaks.replace("\r\n", "\n").rstrip("\n") == "[Tver\nBcc: victim@x.test]\nBye"
    # Not substituted again.
    placeholders = by_recipient["c3@x.test"].get_body(("plain",)).get_content()
    assert placeholders.replace("\r\n", "\n").rstrip("\n") == "[{{ email }} {{ unsubscribe_url }}]\nBye"
