"""Review of the SIZE-refused retry (555 to MAIL FROM ... SIZE=n) and of
LIMITS MAILMAX (RFC 9422), as odd real servers play them: one that hangs
up after its 555, and one that counts every MAIL command against the cap
it announces, the refused one too (as Exim counts smtp_mailcmd_count)."""

import pytest
from django.utils import timezone

from mailing.dispatch.replies import TOO_BIG_NOTE
from mailing.models import Contact, Letter
from tests.reliability.faults import Fault, FaultHandler, fault_server
from tests.reliability.test_per_connection_cap import AnnouncesItsCap
from tests.servers.factories import make_server

from .builders import run_until_settled as settle
from .test_dispatch_real_world import start, statuses
from .test_dispatch_size import (
    RefusesTheSizeItOffers,
    assert_not_resting,
    emails,
    sent_after_one_refusal,
    sent_but_the_big_one,
)

pytestmark = pytest.mark.django_db
L = Letter.Status


class RefusesSizeAndHangsUp(RefusesTheSizeItOffers):
    """Offers SIZE, answers the parameter 555 and hangs up at once, as a
    filter in front of a server may; without SIZE it takes the letter."""

    def refusing(self, server, session) -> None:
        server.hanging_up = True


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_555_and_a_hang_up_sends_the_letter_over_a_new_connection(tenant_a, pipelining):
    """The retry without SIZE went on the connection the server had closed:
    the first letter of a connection met "please run connect() first", a
    lost connection, and the server rested for what was its hang-up after
    a refusal (rset: the next letter goes over a new connection)."""
    sent_after_one_refusal(tenant_a, RefusesSizeAndHangsUp(pipelining=pipelining), 3)


class CountsEveryMail(AnnouncesItsCap, RefusesTheSizeItOffers):
    """Announces LIMITS MAILMAX=cap and counts every MAIL command against
    it, one refused for its SIZE too (Exim's smtp_mailcmd_count); the one
    over the cap meets cap_fault. Refuses SIZE with 555."""

    def refusing(self, server, session) -> None:
        session.mails = getattr(session, "mails", 0) + 1


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_the_size_retry_counts_toward_mail_max(tenant_a, settings, cap):
    """begun_here counts the refused MAIL and its retry, but the early
    envelope was decided before the retry: with MAILMAX=2 the next
    letter's envelope rode the dot of the connection's last letter (its
    third MAIL), and with MAILMAX=1 the retry itself was one MAIL too many:
    the server said its cap, which the batch was to read instead."""
    settings.DISPATCH_BATCH = 20
    fault = Fault("cap", "mail", "421 too many messages in this connection", close=True)
    handler = CountsEveryMail(pipelining=True, cap=cap, cap_fault=fault)
    sent_after_one_refusal(tenant_a, handler, 5)
    assert handler.played == []  # the cap was never said
    assert handler.handed == 5


def test_the_announced_maximum_still_holds_once_the_size_parameter_is_refused(tenant_a, settings):
    """The 555 refuses the parameter, not the maximum the EHLO announces:
    size_options dropped the TooBig check with the parameter, and a letter
    above the maximum went whole, to be refused after its body (a letter
    handed, counted against the limit, for nothing)."""
    settings.DISPATCH_BATCH = 20  # one batch: the 555 and the big letter on one connection
    big = "s1@x.test"
    Contact.objects.create(tenant=tenant_a, email="s0@x.test")  # the first letter, the one refused 555
    Contact.objects.create(tenant=tenant_a, email=big, first_name="x" * 100)
    handler = RefusesTheSizeItOffers()
    server, letters = sent_but_the_big_one(tenant_a, handler, big)
    assert letters[big].status == L.FAILED
    assert letters[big].last_reply.startswith(TOO_BIG_NOTE) and "(its SIZE)" in letters[big].last_reply
    assert handler.refused == 1
    assert handler.mails == 3 and len(handler.accepted) == 3  # nothing of the big one reached the server
    assert_not_resting(server)


class AnnouncesItsCapLater(FaultHandler):
    """Caps every connection at `cap` letters (421 and hang up), and says so
    in its EHLO (LIMITS MAILMAX) from its second connection on: a pool
    behind one name whose first machine does not announce what it holds to."""

    ehlos = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        with self.lock:
            self.ehlos += 1
            later = self.ehlos > 1
        return [*responses[:-1], f"250-LIMITS MAILMAX={self.cap}", responses[-1]] if later else responses


def test_a_cap_announced_after_the_reconnect_holds_for_the_letter_that_goes_again(tenant_a, settings):
    """The letter that met the cap goes over a new connection (_capped,
    _afresh) with the `early` the loop decided for the old connection: the
    new one's LIMITS MAILMAX=1 was not asked, and the next envelope rode its
    only letter's dot, meeting the cap the server had just announced."""
    settings.DISPATCH_BATCH = 20
    fault = Fault("cap", "mail", "421 too many messages in this connection", close=True)
    handler = AnnouncesItsCapLater(pipelining=True, cap=1, cap_fault=fault)
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(4))
        assert settle(mailing, timezone.now()) == "done"
    assert statuses(mailing) == dict.fromkeys(emails(4), L.SENT)
    assert len(handler.played) == 1  # on the first connection only, which did not announce it
    assert handler.handed == 4
    assert set(Letter.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}
    assert_not_resting(server)
