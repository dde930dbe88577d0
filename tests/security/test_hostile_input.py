"""Control characters in every field that ends up in a mail header or a
mail-protocol command (header and command injection): CR, LF, CRLF and NUL,
and every other kind servers.validators refuses (TAB and the other C0
controls, DEL, C1 controls, the Unicode line and paragraph separators).

- Through the forms, over HTTP as the owner: adding and editing answer the
  form again (400, no redirect) with the error next to that field, and the
  database is as it was.
- Through the model layer: full_clean() names that field.
- If a value gets past both (a row written behind the models' back, or a
  contact's data substituted into the subject), building the letter refuses
  the From, Reply-To and To headers, and the subject comes out as one line
  with every control character made a space: contact data never makes a
  letter refused.

The mailing's and the tenant's names reach no letter header; the tenant's
name reaches the subject of the platform's invitation email, which keeps it
to one line."""

import email
import email.policy
import re
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from accounts import emails
from accounts.models import Invitation, Tenant
from mailing import contacts, dispatch, mailings
from mailing.dispatch.messages import HeaderInjection, build_message
from mailing.models import Contact, CustomField, Letter, Mailing, MailTemplate
from servers.models import BounceMailbox, Health, SmtpServer
from servers.validators import first_unsafe
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db

PAYLOADS = {
    "CR": "\r", "LF": "\n", "CRLF": "\r\n", "NUL": "\x00",
    # What the builder used to refuse on every batch while the forms took it.
    "VT": "\x0b", "FF": "\x0c", "FS": "\x1c", "NEL": "\x85", "LSEP": "\u2028", "PSEP": "\u2029",
    # What nothing refused: the other C0 controls, DEL and the C1 controls.
    "TAB": "\t", "SOH": "\x01", "ESC": "\x1b", "US": "\x1f", "DEL": "\x7f", "PAD": "\x80", "APC": "\x9f",
}  # fmt: skip
INJECTED = "X-Injected: 1"

TEMPLATE = {
    "name": "Spring sale",
    "subject": "Hello {{ first_name }}",
    "text_body": "Hi {{ first_name }}! {{ unsubscribe_url }}",
    "html_body": "",
    "sender_email": "news@acme.test",
    "sender_name": "Acme News",
    "reply_to": "replies@acme.test",
}
SERVER = {
    "name": "Company",
    "sender_email": "news@acme.test",
    "sender_name": "Acme",
    "host": "smtp.acme.test",
    "port": "465",
    "security": "ssl",
    "login": "news@acme.test",
    "password": "pw",
    "enabled": "on",
}
MAILBOX = {
    "email": "bounces@acme.test",
    "protocol": "imap",
    "host": "imap.acme.test",
    "port": "993",
    "security": "ssl",
    "login": "bounces@acme.test",
    "password": "pw",
    "folder": "INBOX",
    "enabled": "on",
}
CONTACT = {"email": "ann@x.test", "first_name": "Ann", "last_name": "Lee"}
STATS: Counter = Counter()


class Kind:
    """One kind of object: its add and edit URLs, the form's valid data, and
    how to make a stored one and a valid unsaved one."""

    def __init__(
        self,
        model: type[models.Model],
        data: dict[str, str],
        add: str,
        edit: Callable[[models.Model], str],
        make: Callable[[Tenant], models.Model],
        exclude: tuple[str, ...] = (),
    ) -> None:
        self.model, self.data, self.add, self.edit, self.make, self.exclude = model, data, add, edit, make, exclude

    def unsaved(self, tenant: Tenant) -> models.Model:
        values = {k: v for k, v in self.data.items() if k in {f.name for f in self.model._meta.fields}}
        if "port" in values:
            values["port"] = int(values["port"])
        if "enabled" in values:
            values["enabled"] = True
        return self.model(tenant=tenant, **values)


def _server(tenant: Tenant) -> SmtpServer:
    return make_server(tenant, **{k: v for k, v in SERVER.items() if k not in ("password", "enabled")} | {"port": 465})


def _mailbox(tenant: Tenant) -> BounceMailbox:
    fields = {k: v for k, v in MAILBOX.items() if k not in ("password", "enabled")} | {"port": 993}
    return BounceMailbox.objects.create(tenant=tenant, **fields)


KINDS = {
    "template": Kind(
        MailTemplate, TEMPLATE, reverse("templates:add"),
        lambda t: reverse("templates:edit", args=[t.public_id]), lambda tenant: make_template(tenant, **TEMPLATE),
    ),
    "server": Kind(
        SmtpServer, SERVER, reverse("servers:add"), lambda s: reverse("servers:edit", args=[s.public_id]), _server,
    ),
    "mailbox": Kind(BounceMailbox, MAILBOX, reverse("servers:mailbox"), lambda m: reverse("servers:mailbox"), _mailbox),
    "contact": Kind(
        Contact, CONTACT, reverse("contacts:add"), lambda c: reverse("contacts:edit", args=[c.public_id]),
        lambda tenant: Contact.objects.create(tenant=tenant, **CONTACT), exclude=("lists",),
    ),
}  # fmt: skip
# Every field whose value goes into a letter's header or into an SMTP or
# IMAP command (the mailbox's login and folder).
FIELDS = [
    ("template", "subject"),
    ("template", "sender_name"),
    ("template", "sender_email"),
    ("template", "reply_to"),
    ("server", "name"),
    ("server", "sender_email"),
    ("server", "sender_name"),
    ("server", "host"),
    ("server", "login"),
    ("mailbox", "host"),
    ("mailbox", "login"),
    ("mailbox", "folder"),
    ("contact", "email"),
    # Names go into the subject of letters.
    ("contact", "first_name"),
    ("contact", "last_name"),
]


def hostile(value: str, char: str) -> str:
    """The usual attack: a line break, then a header (or a command) of the
    attacker's choosing, inside the value where trimming cannot remove it."""
    return f"{value}{char}{INJECTED}"


def rows(model: type[models.Model]) -> list[dict]:
    return list(model.objects.order_by("pk").values())


def field_errors(response, field: str) -> list[str]:
    """The errors the page shows next to `field` (includes/field.html)."""
    match = re.search(rf'<ul class="field-errors" id="id_{field}_error">(.*?)</ul>', response.content.decode(), re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1), re.S) if match else []


def code(payload: str) -> str:
    """How the error names the payload's (first) character: U+000B."""
    return f"U+{ord(PAYLOADS[payload][0]):04X}"


def assert_named_next_to(response, field: str, payload: str) -> None:
    """The error next to `field` names the character, whatever the field's
    other checks (an address's syntax) say about the value. A contact's
    address is the exception: email-validator refuses it with its own words."""
    errors = field_errors(response, field)
    if response.wsgi_request.path.startswith("/contacts/") and field == "email":
        assert errors, f"no error next to {field}"
        return
    assert any(code(payload) in error for error in errors), f"no error naming {code(payload)} next to {field}: {errors}"


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    fields = len({f for f, _ in STATS if STATS[f, "form"] and STATS[f, "model"]}) if STATS else 0
    payloads = len({p for _, p in STATS if p in PAYLOADS})
    print(
        f"\nhostile input: {fields} fields x {payloads} payloads refused through forms and models, "
        f"0 stored ({STATS['letters', 'refused']} letters refused, "
        f"{STATS['letters', 'one-line']} subjects kept to one line)"
    )


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("kind", "field"), FIELDS, ids=[f"{k}.{f}" for k, f in FIELDS])
def test_the_form_refuses_it_next_to_the_field_and_stores_nothing(alice, tenant_a, kind, field, payload):
    spec = KINDS[kind]
    data = {**spec.data, field: hostile(spec.data[field], PAYLOADS[payload])}
    if kind != "mailbox":  # one mailbox per tenant: the same page adds and edits it
        before = rows(spec.model)
        response = alice.client.post(spec.add, data)
        assert response.status_code == 400, (response.status_code, response.get("Location"))
        assert_named_next_to(response, field, payload)
        assert rows(spec.model) == before
    stored = spec.make(tenant_a)
    before = rows(spec.model)
    response = alice.client.post(spec.edit(stored), data)
    assert response.status_code == 400, (response.status_code, response.get("Location"))
    assert_named_next_to(response, field, payload)
    assert rows(spec.model) == before
    STATS[f"{kind}.{field}", "form"] += 1
    STATS[f"{kind}.{field}", payload] += 1


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("kind", "field"), FIELDS, ids=[f"{k}.{f}" for k, f in FIELDS])
def test_full_clean_refuses_it_for_that_field(tenant_a, kind, field, payload):
    spec = KINDS[kind]
    record = spec.unsaved(tenant_a)
    record.full_clean(exclude=spec.exclude)  # valid as it is
    setattr(record, field, hostile(getattr(record, field), PAYLOADS[payload]))
    with pytest.raises(ValidationError) as refused:
        record.full_clean(exclude=spec.exclude)
    assert field in refused.value.message_dict, refused.value.message_dict
    assert any(code(payload) in error for error in refused.value.message_dict[field]), refused.value.message_dict
    STATS[f"{kind}.{field}", "model"] += 1


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ["subject", "sender_name", "sender_email", "reply_to"])
def test_full_clean_refuses_it_in_a_mailings_snapshot_of_the_template(tenant_a, field, payload):
    """The snapshot is copied from a checked template; a row changed in the
    admin or the shell is held to the same rule."""
    template = make_template(tenant_a, **{k: v for k, v in TEMPLATE.items() if k != "name"})
    mailing = Mailing(tenant=tenant_a, name="m", template=template, subject=template.subject)
    mailing.sender_email, mailing.sender_name, mailing.reply_to = "a@acme.test", "Acme", "r@acme.test"
    mailing.full_clean()
    setattr(mailing, field, hostile(getattr(mailing, field), PAYLOADS[payload]))
    with pytest.raises(ValidationError) as refused:
        mailing.full_clean()
    assert any(code(payload) in error for error in refused.value.message_dict[field]), refused.value.message_dict


def test_the_message_says_which_character_where_and_why(alice):
    response = alice.client.post(reverse("servers:add"), {**SERVER, "sender_name": "Acme\x0bCorp"})
    assert field_errors(response, "sender_name") == [
        "Remove the control character U+000B (position 5): it cannot go into a mail header."
    ]
    response = alice.client.post(reverse("servers:add"), {**SERVER, "sender_name": "Acme\nCorp"})
    assert field_errors(response, "sender_name") == [
        "Remove the line break U+000A (position 5): it cannot go into a mail header."
    ]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_contact_service_refuses_the_address(tenant_a, payload):
    # The service checks addresses with email-validator, not full_clean.
    with pytest.raises(ValidationError) as refused:
        contacts.contact_create(tenant=tenant_a, email=hostile("ann@x.test", PAYLOADS[payload]))
    assert "email" in refused.value.message_dict
    assert not Contact.objects.exists()


# ---------- What gets past: the letter ----------


@pytest.fixture
def letter(tenant_a) -> Letter:
    contact_list = make_list(tenant_a, "L", ["ann@x.test"])
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    template = make_template(
        tenant_a,
        subject="Hi {{ first_name }} {{ last_name }} from {{ city }}",
        sender_email="ceo@acme.test",
        sender_name="Acme",
        reply_to="replies@acme.test",
    )
    mailing = Mailing(tenant=tenant_a, name="m", template=template)
    server = make_server(tenant_a, sender_email="box@acme.test", allow_sender_substitution=True)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    mailings.mailing_start(mailing=mailing)
    return Letter.objects.select_related("mailing").get()


def parse(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def assert_one_line_headers(message) -> None:
    raw = message.as_bytes().split(b"\n\n", 1)[0]
    assert b"\x00" not in raw and INJECTED.encode() not in raw.replace(b"\r", b"").split(b"\n"), raw
    parsed = parse(message)
    assert parsed["X-Injected"] is None
    # Decoded, so that a control character hidden in an encoded word shows.
    unsafe = {name: value for name, value in parsed.items() if first_unsafe(str(value))}
    assert not unsafe, unsafe


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("key", ["first_name", "last_name", "city"])
def test_contact_data_in_the_subject_stays_on_one_line(letter, key, payload):
    """Contact names may hold line breaks (a quoted CSV cell), and the To
    header carries the address alone: a name reaches a header only through
    the subject, where the break becomes a space."""
    letter.context[key] = hostile("Ann", PAYLOADS[payload])
    message = build_message(letter, letter.mailing.servers.get())
    assert_one_line_headers(message)
    assert "Ann" in parse(message)["Subject"]
    STATS["letters", "one-line"] += 1


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(
    ("owner", "field"),
    [
        ("mailing", "sender_name"),
        ("mailing", "sender_email"),
        ("mailing", "reply_to"),
        ("letter", "email"),
        ("server", "sender_name"),
        ("server", "sender_email"),
    ],
)
def test_a_header_value_that_got_past_the_models_is_refused_at_build(letter, owner, field, payload):
    """A row written behind the models' back (the snapshot fields of a
    started mailing carry no validators; a server changed in the shell)."""
    mailing = letter.mailing
    server = mailing.servers.get()
    if owner == "server":
        server.allow_sender_substitution = False  # so that the server's sender is used
        mailing.sender_name = ""
    target = {"mailing": mailing, "letter": letter, "server": server}[owner]
    setattr(target, field, hostile(getattr(target, field), PAYLOADS[payload]))
    with pytest.raises(HeaderInjection):
        build_message(letter, server, mailing)
    STATS["letters", "refused"] += 1


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_subject_that_got_past_the_models_adds_no_header(letter, payload):
    letter.mailing.subject = hostile("Sale", PAYLOADS[payload])
    message = build_message(letter, letter.mailing.servers.get())
    assert_one_line_headers(message)  # the control characters become spaces
    assert parse(message)["Subject"] == f"Sale {INJECTED}"
    STATS["letters", "one-line"] += 1


def test_a_letter_from_contact_data_holding_every_control_character_goes_out_clean(letter):
    """Names with controls are refused on the way in; custom fields keep
    them (bodies may use line breaks). Whatever got into a letter's context,
    the subject carries it as spaces and the letter is built."""
    every = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029])
    for key in ("first_name", "last_name", "city"):
        letter.context[key] = f"A{every}B"
    message = build_message(letter, letter.mailing.servers.get())
    assert_one_line_headers(message)
    assert parse(message)["Subject"] == "Hi A B A B from A B"


def test_a_server_stored_with_a_control_character_is_taken_out_saying_why_and_the_next_one_sends(tenant_a):
    """A row from before the rule (or the shell) that the forms would refuse:
    the rules check before connecting marks the server failing with the
    reason, and the letters go through the next server, instead of the
    builder refusing every letter of every batch while nobody is told."""
    with smtp_server() as (c1, h1), smtp_server() as (c2, h2):
        bad = make_server(tenant_a, name="Bad", port=c1.port, priority=0)
        SmtpServer.objects.filter(pk=bad.pk).update(sender_name="Acme\x0bCorp")
        good = make_server(tenant_a, name="Good", port=c2.port, priority=1)
        contact_list = make_list(tenant_a, "L", ["a@x.test", "b@x.test"])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[bad, good])
        mailings.mailing_start(mailing=mailing)
        for _ in range(10):
            if dispatch.run_mailing(mailing_id=mailing.pk) != "more":
                break
    bad.refresh_from_db()
    assert bad.health == Health.FAILING and "U+000B (position 5)" in bad.health_error
    assert (len(h1.received), len(h2.received)) == (0, 2)


@pytest.mark.parametrize("payload", ["CR", "LF", "CRLF"])
def test_the_tenant_name_keeps_the_invitation_subject_to_one_line(tenant_a, payload):
    # PostgreSQL stores no NUL, and the organisation forms refuse it.
    Tenant.objects.filter(pk=tenant_a.pk).update(name=hostile("Acme", PAYLOADS[payload]))
    invitation = Invitation.objects.create(tenant=Tenant.objects.get(pk=tenant_a.pk), email="new@x.test")
    emails.invitation(invitation=invitation, base_url="http://testserver")
    sent = mail.outbox[-1]
    assert "\n" not in sent.subject and "\r" not in sent.subject
    message = sent.message()
    assert message["X-Injected"] is None and "\n" not in message["Subject"]
    STATS["letters", "one-line"] += 1


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_mailing_name_reaches_no_header(letter, payload):
    letter.mailing.name = hostile("m", PAYLOADS[payload])
    assert_one_line_headers(build_message(letter, letter.mailing.servers.get()))
