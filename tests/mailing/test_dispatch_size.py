"""The SIZE extension (RFC 1870): a server that offers it is told each
letter's size in its MAIL FROM, and one that announces a maximum is not
sent a letter above it: that letter fails at once with a sentence naming
both sizes, the server does not rest, and the batch goes on. A server's
552 for a letter's size, at MAIL or after the message, is that letter's
failure, not the server's. Played by real servers: aiosmtpd (which offers
SIZE and checks it) and scripted ones (tests.smtp_servers)."""

import re

import pytest
from django.utils import timezone, translation

from mailing.dispatch import batch as batch_module
from mailing.dispatch.replies import TOO_BIG_NOTE, shown_reply
from mailing.models import Contact, Letter
from servers.models import Health, SmtpServer
from tests.reliability.faults import Fault, FaultHandler, FaultPlan, fault_server
from tests.servers.factories import make_server
from tests.smtp_servers import Pipelining, Scripted, smtp_server, tarpit

from .builders import run_until_settled as settle
from .test_dispatch_real_world import HoldsTheFirstReply, start, statuses

pytestmark = pytest.mark.django_db
L = Letter.Status

SIZE_PARAM = re.compile(rb" SIZE=(\d+)", re.IGNORECASE)
# A letter of some 2 KB, and one of more than 20 KB: the contact's long
# first name a hundred times over.
BODY = {"text_body": "Hi {{ first_name }}! " * 100 + "{{ unsubscribe_url }}", "html_body": "<p>{{ first_name }}</p>"}
LIMIT = 8000


class Recording(FaultHandler):
    """Keeps each MAIL command's parameters."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.options = [*getattr(self, "options", []), list(mail_options)]
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def emails(count: int) -> list[str]:
    return [f"s{i}@x.test" for i in range(count)]


def assert_not_resting(server) -> None:
    server.refresh_from_db()
    assert (server.backoff_until, server.connection_failures) == (None, 0), server.rest_reply
    assert server.health != Health.FAILING


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_server_offering_size_is_told_each_letters_size(tenant_a, pipelining):
    handler = Recording(pipelining=pipelining)
    with fault_server(handler) as controller:  # aiosmtpd offers "SIZE 33554432"
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(4))
        assert settle(mailing, timezone.now()) == "done"
    assert set(statuses(mailing).values()) == {L.SENT}
    # Before the fix: no SIZE parameter at all.
    sizes = [[int(o[5:]) for o in options if o.upper().startswith("SIZE=")] for options in handler.options]
    # RFC 1870 §4: the octets after the 354, CRLFs included, without the
    # final dot and the doubled dots: what the server received.
    assert sizes == [[len(item.data)] for item in handler.received]


@pytest.mark.parametrize(
    "ehlo, said",
    [
        (b"250-odd.test\r\n250 SIZE\r\n", True),  # no number: no limit announced
        (b"250-odd.test\r\n250 SIZE 0\r\n", True),  # 0: no limit (RFC 1870 §4)
        (b"250-odd.test\r\n250-PIPELINING\r\n250 SIZE 0\r\n", True),
        (b"250 odd.test\r\n", False),  # no SIZE offered: no parameter
    ],
)
def test_size_without_a_maximum_limits_nothing(tenant_a, ehlo, said):
    script = Scripted(ehlo=ehlo)
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails(2), **BODY)
        assert settle(mailing, timezone.now()) == "done"
    assert set(statuses(mailing).values()) == {L.SENT}
    mails = [line for heard in script.heard for line in heard if line.upper().startswith(b"MAIL FROM")]
    assert len(mails) == 2
    assert [bool(SIZE_PARAM.search(line)) for line in mails] == [said, said]


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_letter_above_the_announced_size_fails_unsent_and_the_rest_goes(tenant_a, pipelining):
    """The second of four letters is above the server's SIZE: it never goes
    (the server would refuse it after its whole body), it fails with both
    sizes, and the other letters go on the same connection."""
    big = "s1@x.test"
    Contact.objects.create(tenant=tenant_a, email=big, first_name="x" * 100)
    handler = FaultHandler(pipelining=pipelining)
    server, letters = sent_but_the_big_one(tenant_a, handler, big)
    letter = letters[big]
    assert (letter.status, letter.attempts) == (L.FAILED, 1)
    # Before the fix: "552 Error: Too much mail data", after its whole body.
    found = re.fullmatch(
        re.escape(TOO_BIG_NOTE) + r"(\d+) bytes, the server.s maximum is (\d+) \(its SIZE\)\.", letter.last_reply
    )
    assert found, letter.last_reply
    size, limit = map(int, found.groups())
    assert size > LIMIT and limit == LIMIT
    assert handler.mails == 3 and len(handler.accepted) == 3  # nothing of it reached the server
    with translation.override("ru"):
        shown = shown_reply(letter.last_reply)
    assert shown.startswith("Письмо больше, чем принимает сервер: ")
    assert str(size) in shown and str(LIMIT) in shown and "bytes" not in shown
    assert_not_resting(server)


def sent_but_the_big_one(tenant, handler: FaultHandler, big: str) -> tuple[SmtpServer, dict[str, Letter]]:
    """Four letters through the handler's server, which announces "SIZE
    8000": all sent but `big`'s; the server, and the letters by address."""
    with smtp_server(handler=handler, data_size_limit=LIMIT) as (controller, _):
        server = make_server(tenant, port=controller.port)
        mailing = start(tenant, [server], emails(4), **BODY)
        assert settle(mailing, timezone.now()) == "done"
    letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    assert {e: le.status for e, le in letters.items() if e != big} == dict.fromkeys(set(emails(4)) - {big}, L.SENT)
    return server, letters


# A 552 for the letter's size, from a server that announces no maximum (or a
# larger one than it holds to): the letter fails, the server goes on.
SIZE_AT_MAIL = Fault("552 at MAIL", "mail", "552 5.3.4 Message size exceeds fixed maximum message size")
SIZE_AT_DOT = Fault("552 after DATA", "data", "552 5.3.4 Error: message file too big")


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("fault", [SIZE_AT_MAIL, SIZE_AT_DOT], ids=lambda f: f.name)
def test_a_552_for_the_size_fails_that_letter_not_the_server(tenant_a, settings, fault, pipelining):
    plan = FaultPlan()
    handler = FaultHandler(plan=plan, pipelining=pipelining)
    if fault.phase == "mail":
        handler.mail_faults = {2: fault}
    else:
        plan.add("s1@x.test", fault)
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(3))
        # Before the fix, at MAIL: the server taken out as if our sender were refused.
        assert settle(mailing, timezone.now()) == "done"
    letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    assert (letters["s1@x.test"].status, letters["s1@x.test"].last_reply) == (L.FAILED, TOO_BIG_NOTE + fault.reply)
    assert letters["s0@x.test"].status == letters["s2@x.test"].status == L.SENT
    assert_not_resting(server)


class HoldsThePipelinedFirstReply(Pipelining, HoldsTheFirstReply):
    pass


def test_with_size_and_pipelining_each_letter_is_made_once_while_the_server_takes_another(tenant_a, monkeypatch):
    """The envelope that goes with a final dot needs its letter's SIZE, so
    its bytes are made before that dot: the letter after it is the one made
    while the server takes the letter (the making stays out of the chain of
    waits), and each letter is still made once, in order."""
    handler = HoldsThePipelinedFirstReply()
    real = batch_module.Builder.wire
    made: list[str] = []

    def wire(builder, letter):
        made.append(letter.email)
        if letter.email.startswith("c"):
            handler.released.set()
        return real(builder, letter)

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    order = ["a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"]
    with smtp_server(handler=handler) as (controller, _):  # "SIZE 33554432", PIPELINING
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], order)
        assert settle(mailing, timezone.now()) == "done"
    assert handler.in_time == [True]  # c was made while the server held its reply to a's final dot
    assert made == order
    assert [received.rcpt_tos for received in handler.received] == [[email] for email in order]


@pytest.mark.parametrize(
    "announced",
    [b"abc", b"-1", b"99999999999999999999", b"\xb2", b"\xb9\xb2\xb3"],
    ids=["words", "negative", "huge", "superscript two", "superscript digits"],
)
def test_a_size_that_is_no_number_limits_nothing(tenant_a, announced):
    """A server's SIZE keyword with garbage after it: no maximum is known,
    so none is held against the letters; they all go. smtplib reads the
    EHLO as Latin-1, where "\\xb2" is "²", which str.isdigit() takes for a
    digit and int() refuses."""
    script = Scripted(ehlo=b"250-odd.test\r\n250 SIZE " + announced + b"\r\n")
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails(2))
        # Before the fix, for "²": every letter failed, "The message could not be built: invalid literal for int()".
        assert settle(mailing, timezone.now()) == "done"
    assert set(statuses(mailing).values()) == {L.SENT}
    assert_not_resting(server)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_letter_exactly_at_the_announced_size_goes_and_one_byte_more_does_not(tenant_a, monkeypatch, pipelining):
    """Each letter padded to a chosen size (RFC 1870's: the octets after the
    354, CRLFs included): at the server's SIZE it goes, with SMTPUTF8 for a
    recipient whose address is not ASCII as well; one octet more fails
    unsent. aiosmtpd counts the same octets and takes the first ones."""
    real = batch_module.Builder.wire
    target = {"s0@x.test": LIMIT, "josé@x.test": LIMIT, "s2@x.test": LIMIT + 1, "s3@x.test": LIMIT - 1}

    def wire(builder, letter):
        data = real(builder, letter)
        data = data if data.endswith(b"\r\n") else data + b"\r\n"
        pad = target[letter.email] - len(data)  # in lines of 80 octets at most
        return data + b"".join(b"x" * (min(pad - i, 80) - 2) + b"\r\n" for i in range(0, pad, 80))

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    handler = Recording(pipelining=pipelining)
    with smtp_server(handler=handler, data_size_limit=LIMIT, enable_SMTPUTF8=True) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], list(target), **BODY)
        assert settle(mailing, timezone.now()) == "done"
    replies = {le.email: le.last_reply for le in Letter.objects.filter(mailing=mailing)}
    assert statuses(mailing) == {
        "s0@x.test": L.SENT,
        "josé@x.test": L.SENT,
        "s2@x.test": L.FAILED,
        "s3@x.test": L.SENT,
    }, replies
    assert sorted(len(received.data) for received in handler.received) == [LIMIT - 1, LIMIT, LIMIT]
    sizes = {o.upper() for options in handler.options for o in options if o.upper().startswith("SIZE=")}
    assert sizes == {f"SIZE={LIMIT}", f"SIZE={LIMIT - 1}"}
    assert ["SMTPUTF8" in [o.upper() for o in options] for options in handler.options].count(True) == 1
    assert_not_resting(server)


class SizeChangesWithTls(Recording):
    """Announces `before` (a SIZE line, or none) until STARTTLS, and
    `after` once the connection is encrypted."""

    def __init__(self, before: str | None, after: str | None) -> None:
        super().__init__()
        self.before, self.after = before, after

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        size = self.after if session.ssl else self.before
        kept = [line for line in responses if not line[4:].upper().startswith("SIZE")]
        return kept[:-1] + ([f"250-{size}"] if size else []) + kept[-1:]


@pytest.mark.parametrize(
    "before, after, sent",
    [
        ("SIZE 100", "SIZE 33554432", True),  # a lie before TLS, the truth after it
        (None, f"SIZE {LIMIT}", False),  # SIZE offered only after STARTTLS
        (f"SIZE {LIMIT}", None, True),  # and withdrawn after it
    ],
)
def test_the_size_announced_after_starttls_is_the_one_held(tenant_a, tmp_path, settings, before, after, sent):
    """RFC 3207 §4.2: what the server said before STARTTLS is forgotten; the
    EHLO after it says what the encrypted connection offers."""
    from servers.models import Security
    from tests.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    settings.SERVERS_EXTRA_CA_FILE = str(certs.ca_file)
    big = "s1@x.test"
    Contact.objects.create(tenant=tenant_a, email=big, first_name="x" * 100)
    handler = SizeChangesWithTls(before, after)
    with smtp_server(handler=handler, tls="starttls", certs=certs, data_size_limit=0) as (controller, _):
        server = make_server(tenant_a, host="localhost", port=controller.port, security=Security.STARTTLS)
        mailing = start(tenant_a, [server], emails(2), **BODY)
        assert settle(mailing, timezone.now()) == "done"
    assert statuses(mailing) == {"s0@x.test": L.SENT, big: L.SENT if sent else L.FAILED}
    said = [any(o.upper().startswith("SIZE=") for o in options) for options in handler.options]
    assert said == [after is not None] * len(handler.options)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_each_letters_size_is_its_own_when_substitution_changes_it(tenant_a, pipelining):
    """Letters of one template whose sizes differ by their recipients' names:
    each MAIL FROM (the one riding the previous letter's dot included) says
    the size of the very bytes that follow its 354."""
    for i, email in enumerate(emails(5)):
        Contact.objects.create(tenant=tenant_a, email=email, first_name="n" * (1 + 23 * i))
    handler = Recording(pipelining=pipelining)
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(5), **BODY)
        assert settle(mailing, timezone.now()) == "done"
    sizes = [int(o[5:]) for options in handler.options for o in options if o.upper().startswith("SIZE=")]
    received = [len(item.data) for item in handler.received]
    assert sizes == received and len(set(received)) == 5


class RefusesTheSizeItOffers(FaultHandler):
    """Offers SIZE in its EHLO (aiosmtpd does) but refuses the parameter:
    "555 5.5.4 Unsupported option: SIZE", as appliances do, and servers
    behind a filter that announces what the server behind it lacks. Counts
    what it refused, and the letters' connections."""

    refused = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if any(option.upper().startswith("SIZE=") for option in mail_options):
            with self.lock:
                self.refused += 1
                self.refusing(server, session)
            return "555 5.5.4 Unsupported option: SIZE"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    def refusing(self, server, session) -> None:
        """What else the server does as it refuses (subclasses)."""


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_server_refusing_the_size_it_offers_gets_the_letters_without_it(tenant_a, pipelining):
    """Before the fix the 555 was judged a refusal of our sender: the server
    was taken out (failing) and no letter went. Now the letter goes again at
    once without SIZE on the same connection, and so does every letter after
    it in the batch: one refusal in all, nothing failed, the server well."""
    handler = RefusesTheSizeItOffers(pipelining=pipelining)
    sent_after_one_refusal(tenant_a, handler, 4)
    assert sorted(item.rcpt_tos[0] for item in handler.received) == emails(4)
    assert handler.sessions == 1  # the same connection


def sent_after_one_refusal(tenant, handler: "RefusesTheSizeItOffers", count: int) -> None:
    """`count` letters through the handler's server: each sent, once, after
    the one refusal of the SIZE parameter, and the server does not rest."""
    with fault_server(handler) as controller:
        server = make_server(tenant, port=controller.port)
        mailing = start(tenant, [server], emails(count))
        assert settle(mailing, timezone.now()) == "done"
    assert statuses(mailing) == dict.fromkeys(emails(count), L.SENT)
    assert handler.refused == 1
    assert set(Letter.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}
    assert_not_resting(server)


def test_a_555_without_size_is_still_a_refusal_of_the_sender(tenant_a):
    """A 555 said again to the MAIL without SIZE is the server's answer to
    our sender, judged as before: the retry happens once, never a loop."""
    handler = FaultHandler()
    handler.mail_faults = {1: Fault("555", "mail", "555 5.5.4 Unsupported option: SIZE"),
                           2: Fault("555", "mail", "555 5.5.4 Unsupported option: SIZE")}  # fmt: skip
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(2))
        settle(mailing, timezone.now())
    assert handler.mails == 2  # the first MAIL, its one retry without SIZE; then the server is out
    assert not handler.received
    server.refresh_from_db()
    assert server.health == Health.FAILING or server.backoff_until is not None
