"""A batch makes each next letter while the server takes the one before
(after its final dot, before its reply): every letter still goes exactly
as the generator writes it, across refusals and reconnects; a letter made
ahead that the batch does not reach goes back to the queue uncounted and
unmarked; a letter that cannot be made fails in its own turn, with its own
error. Written by an outside review of the change, on real aiosmtpd and
socket servers."""

from datetime import timedelta
from email.generator import BytesGenerator

import pytest
from django.utils import timezone

from mailing import limits, unsubscribe
from mailing.dispatch import batch as batch_module
from mailing.dispatch import messages
from mailing.models import Letter, Mailing
from mailing.sink import SinkHandler
from tests.servers.factories import make_server
from tests.smtp_servers import Pipelining, _until_data, smtp_server, tarpit

from .builders import run_until_settled as settle
from .test_dispatch_real_world import Refusing, start

pytestmark = pytest.mark.django_db


def used(server, tenant) -> int:
    return limits.window_usage([server], tenant)[server.pk].day_used


def making(monkeypatch, also=None):
    """Wraps Builder.wire: every (builder, letter, bytes) made, in order."""
    real = batch_module.Builder.wire
    made = []

    def wire(builder, letter):
        if also is not None:
            also(letter)
        data = real(builder, letter)
        made.append((builder, letter, data))
        return data

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    return made


class RefusesAtTheDotAndCannotReset(Pipelining, SinkHandler):
    """Refuses b's final dot for its content and answers RSET with 500:
    the batch goes on over a new connection, with the letter it made
    while the server took b. Without PIPELINING: with it, the next
    letter's envelope goes with the dot and no RSET follows a refused one
    (test_dispatch.py: ..._the_next_envelope_goes_with_the_final_dot)."""

    pipelining = False

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0].startswith("b@"):
            return "554 5.7.1 Message content rejected"
        return await super().handle_DATA(server, session, envelope)

    ehlos = 0

    async def handle_RSET(self, server, session, envelope):
        return "500 5.5.1 no RSET here"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.mark.parametrize("html", ["", "<p>Hi {{ first_name }}</p>"], ids=["text", "multipart"])
def test_every_letter_goes_as_the_generator_writes_it_across_a_refusal_at_the_dot_and_a_reconnect(
    tenant_a, monkeypatch, html
):
    monkeypatch.setattr(messages, "_date", lambda: "Thu, 01 Jan 2026 00:00:00 -0000")
    monkeypatch.setattr(unsubscribe, "_timestamp", lambda: "1abc")
    monkeypatch.setattr(BytesGenerator, "_make_boundary", classmethod(lambda cls, text=None: "===review=="))
    made = making(monkeypatch)
    handler = RefusesAtTheDotAndCannotReset()
    emails = ["a@x.test", "b@x.test", "josé@example.test", "c@x.test", "d@x.test"]
    with smtp_server(handler=handler, enable_SMTPUTF8=True) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails, html_body=html)
        assert settle(mailing) == "done"
    statuses = dict(Letter.objects.filter(mailing=mailing).values_list("email", "status"))
    assert statuses == {
        "a@x.test": "sent",
        "b@x.test": "failed",
        "josé@example.test": "sent",
        "c@x.test": "sent",
        "d@x.test": "sent",
    }
    order = [letter.email for _, letter, _ in made]
    assert sorted(order) == sorted(emails)  # each made once
    assert handler.ehlos == 2  # b's refusal could not be reset: a new connection
    by_email = {letter.email: (builder, letter, data) for builder, letter, data in made}
    assert [r.rcpt_tos[0] for r in handler.received] == [e for e in order if e != "b@x.test"]
    for received in handler.received:
        builder, letter, data = by_email[received.rcpt_tos[0]]
        reference = builder.message(letter).as_bytes(policy=messages.WIRE)
        assert data == reference
        assert received.data.rstrip(b"\r\n") == reference.rstrip(b"\r\n")
    assert used(server, tenant_a) == 5


def test_a_letter_made_ahead_of_a_pause_goes_back_uncounted_and_unmarked(tenant_a, monkeypatch, settings):
    settings.DISPATCH_TICK = 0  # the batch asks before every letter
    holder = {}

    def pause_when_b_is_made(letter):
        if letter.email == "b@x.test":
            Mailing.objects.filter(pk=holder["mailing"].pk).update(status=Mailing.Status.PAUSED)

    made = making(monkeypatch, pause_when_b_is_made)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        holder["mailing"] = mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        batch_module.send_batch(mailing, server, now=timezone.now())
    assert [letter.email for _, letter, _ in made] == ["a@x.test", "b@x.test"]
    rows = {x.email: x for x in Letter.objects.filter(mailing=mailing)}
    assert [r.rcpt_tos for r in handler.received] == [["a@x.test"]]
    b = rows["b@x.test"]
    assert (b.status, b.attempts, b.claim_token, b.server_id, b.last_reply, b.sent_at) == (
        "queued",
        0,
        None,
        None,
        "",
        None,
    )
    assert used(server, tenant_a) == 1


def test_a_letter_made_ahead_of_a_421_at_the_dot_goes_back_uncounted(tenant_a, monkeypatch):
    made = making(monkeypatch)
    handler = Refusing("421 4.3.2 Service shutting down", at="dot", who=lambda rcpt: rcpt.startswith("a@"))
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        batch_module.send_batch(mailing, server, now=timezone.now())
    assert [letter.email for _, letter, _ in made] == ["a@x.test", "b@x.test"]
    rows = {x.email: x for x in Letter.objects.filter(mailing=mailing)}
    assert {e: (x.status, x.attempts, x.claim_token) for e, x in rows.items()} == {
        "a@x.test": ("queued", 0, None),
        "b@x.test": ("queued", 0, None),
        "c@x.test": ("queued", 0, None),
    }
    assert used(server, tenant_a) == 1  # a reached its dot; b never went


@pytest.mark.parametrize("error", ["unsendable", "runtime"])
def test_a_letter_refused_ahead_fails_in_its_turn_with_its_own_error(tenant_a, monkeypatch, error):
    from mailing.addresses import UnsendableAddress

    def refuse_b(letter):
        if letter.email == "b@x.test":
            raise UnsendableAddress("no way") if error == "unsendable" else RuntimeError("boom")

    made = making(monkeypatch, refuse_b)
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        assert settle(mailing) == "done"
    rows = {x.email: x for x in Letter.objects.filter(mailing=mailing)}
    assert [rows[e].status for e in ("a@x.test", "b@x.test", "c@x.test")] == ["sent", "failed", "sent"]
    assert rows["b@x.test"].last_reply == (
        "no way" if error == "unsendable" else "The message could not be built: boom"
    )
    assert [letter.email for _, letter, _ in made] == ["a@x.test", "c@x.test"]
    assert used(server, tenant_a) == 2


def test_a_server_that_stalls_after_the_dot_leaves_the_letter_made_ahead_queued_uncounted(
    tenant_a, monkeypatch, settings
):
    """The server takes the first letter's dot and never answers: that
    letter may have been taken (deferred, counted); the one made ahead and
    the rest go back untouched."""

    def stalls_after_the_dot(peer):
        if _until_data(peer):
            while (line := peer.line()) and line != b".\r\n":
                pass
            peer.wait()

    settings.DISPATCH_SMTP_TIMEOUT = 0.5
    made = making(monkeypatch)
    with tarpit(stalls_after_the_dot, lasts=3) as port:
        server = make_server(tenant_a, port=port, login="", max_per_hour=100)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        batch_module.send_batch(mailing, server, now=timezone.now())
    first = made[0][1].email
    assert len(made) == 2
    rows = {x.email: x for x in Letter.objects.filter(mailing=mailing)}
    assert rows[first].status == "deferred"  # the dot went: it may have been taken
    assert {(x.status, x.attempts, x.claim_token) for e, x in rows.items() if e != first} == {("queued", 0, None)}
    assert used(server, tenant_a) == 1


class PipeliningRefusing(Pipelining, Refusing):
    pass


@pytest.mark.django_db(transaction=True)  # the next letters are claimed on a thread of their own
def test_an_envelope_abandoned_at_the_end_counts_in_its_own_claim_not_in_next_letters_that_joined(
    tenant_a, monkeypatch, settings
):
    """b's final dot is refused for the rate and stops the batch; c's
    envelope went with it and got 354 (abandoned, counted). The batch's
    next letters were being claimed meanwhile, and another worker took
    them first: an empty claim joins as the batch ends. c counts in its own
    claim's room; it was counted in the empty claim's, whose release of -1
    raised (ValueError) after c's own claim had given back c's room."""
    from mailing import dispatch
    from mailing import mailings as services
    from mailing.dispatch import ahead, claims

    from .builders import make_list, make_template

    settings.DISPATCH_RECORD_THREAD = True
    settings.DISPATCH_BATCH = 3
    real = claims.claim

    def another_worker_first(mailing, server, count, *, now, token=None):
        if token is not None:  # the batch's next letters: another worker's claim takes them all first
            real(mailing, server, 100, now=now)
        return real(mailing, server, count, now=now, token=token)

    monkeypatch.setattr(ahead, "claim", another_worker_first)
    rate = "451 4.7.1 Sending rate limit exceeded, try again later"
    handler = PipeliningRefusing(rate, at="dot", who=lambda rcpt: rcpt.startswith("b@"))
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        contact_list = make_list(tenant_a, "L", ["a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))  # this test sends, not a kick
        services.mailing_start(mailing=mailing)
        batch_module.send_batch(mailing, server, now=timezone.now())
    assert [r.rcpt_tos for r in handler.received] == [["a@x.test"]]
    assert used(server, tenant_a) == 3  # a, b (its dot) and c (its DATA)
