"""What the big providers answer after the final dot about the sender as a
whole, played byte for byte by a real socket server (tests.smtp_servers.Scripted):
each wording names the mailbox or account, never the one letter, so it must
not fail letter after letter of the queue. Each case says where the wording
comes from."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch
from mailing.models import Letter
from servers.models import Health, RestReason
from tests.mailing.builders import from_the_reply
from tests.mailing.builders import run_until_settled as settle
from tests.mailing.test_dispatch_real_world import start, statuses
from tests.servers.factories import make_server
from tests.smtp_servers import Scripted, tarpit

pytestmark = pytest.mark.django_db
L = Letter.Status
EMAILS = [f"r{i}@x.test" for i in range(6)]


def through(reply: bytes, tenant, *, at: str = "dot", now=None):
    """The mailing's letters to a server that answers every final dot (or
    every MAIL FROM: `at`) with `reply`."""
    if at == "dot":
        script = Scripted(after_dot=lambda conn, body: reply)
    else:
        script = Scripted(lambda conn, line: reply if line[:4].upper() == b"MAIL" else None)
    with tarpit(script, lasts=5.0) as port:
        server = make_server(tenant, port=port, login="")
        mailing = start(tenant, [server], EMAILS)
        settle(mailing, now or timezone.now())
    server.refresh_from_db()
    return script, server, mailing


# 1. The login may not send from the letter's From: the server's setting
#    (sender substitution, the sender address), the same for every letter.

NOT_ITS_SENDER = [
    # Yandex checks the From header after DATA:
    # smtplib.SMTPDataError: (553, b'5.7.1 Sender address rejected: not owned by auth user.')
    b"553 5.7.1 Sender address rejected: not owned by auth user.\r\n",
    # Mail.ru, the From header not the login's mailbox (SMTPDataError 550).
    b"550 not local sender over smtp\r\n",
    # Microsoft 365: the login has no "Send As" right on the From address.
    b"554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
    b"process message due to a permanent exception with message Cannot submit message.\r\n",
    b"550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n",
]


@pytest.mark.parametrize("reply", NOT_ITS_SENDER, ids=["yandex", "mail.ru", "m365 SendAs", "m365 5.7.60"])
def test_a_sender_the_login_may_not_use_stops_the_server_and_fails_no_letter(tenant_a, reply):
    script, server, mailing = through(reply, tenant_a)
    # Before the fix: every letter failed with the reply (or three did,
    # then the server rested and three more failed at each rest's end).
    assert not Letter.objects.filter(mailing=mailing, status=L.FAILED).exists(), statuses(mailing)
    assert len(script.bodies) == 1
    assert server.health == Health.FAILING
    assert reply.decode().split()[1] in server.health_error
    # The dashboard says what is wrong: the sender address, not a blacklisting.
    assert "blacklist" not in server.health_hint.lower(), server.health_hint
    assert "sender" in server.health_hint.lower(), server.health_hint
    reasons = dispatch.blocked_reasons(mailing, timezone.now())
    assert "failing" in reasons[0][1] and reasons[0][2] == server.health_hint


# 2. The sender's own quota spent, said with a 5xx: it frees by itself
#    (the provider's day or hour), so the server rests and the letters wait
#    uncounted, where each failed with the reply.

QUOTA_SPENT = [
    # Microsoft 365's recipient rate / daily limit of a mailbox.
    (
        "dot",
        b"554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message "
        b"due to a permanent exception with message Cannot submit message.\r\n",
        timedelta(hours=1),
    ),
    # Outlook.com's daily limit of a free account.
    (
        "dot",
        b"554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a "
        b"permanent exception with message WASCL UserAction verdict is not None. Actual verdict is RefuseQuota, "
        b"ShowTierUpgrade.\r\n",
        timedelta(hours=1),
    ),
    # The same in other words, with the basic code of a permanent refusal.
    (
        "dot",
        b"554 5.7.0 Your message could not be sent. The limit on the number of allowed outgoing messages was "
        b"exceeded. Try again later.\r\n",
        timedelta(hours=1),
    ),
    # A Russian sending service (smtp.msndr.net), at MAIL FROM, naming its wait.
    ("mail", b"550 Too many messages. Try again in 92 seconds.\r\n", timedelta(seconds=92)),
    # A Russian hosting's own words (UTF-8).
    ("dot", "550 5.7.1 Превышен лимит отправки писем с ящика за сутки\r\n".encode(), timedelta(hours=1)),
]


@pytest.mark.parametrize(
    "at, reply, wait", QUOTA_SPENT, ids=["m365 quota", "outlook RefuseQuota", "outgoing limit", "msndr", "russian"]
)
def test_a_sending_quota_spent_rests_the_server_until_the_window_and_fails_no_letter(tenant_a, at, reply, wait):
    now = timezone.now()
    script, server, mailing = through(reply, tenant_a, at=at, now=now)
    # Before the fix: each letter failed with the reply (or, at MAIL FROM,
    # the server was taken for one refusing its own sender: failing).
    assert not Letter.objects.filter(mailing=mailing, status=L.FAILED).exists(), statuses(mailing)
    assert server.health != Health.FAILING, server.health_error
    assert (server.rest_reason, server.rest_reply) == (RestReason.RATE_LIMIT, reply.decode().strip())
    assert from_the_reply(server.backoff_until, now + wait)
    assert len(script.bodies) == (1 if at == "dot" else 0)
    first = Letter.objects.get(mailing=mailing, email=EMAILS[0])
    assert (first.status, first.attempts, first.last_reply) == (L.QUEUED, 0, reply.decode().strip())


# 3. The provider stopped the mailbox from sending (suspected spam or a
#    break-in): no letter can pass until its owner acts on the provider's
#    website.

SENDING_STOPPED = [
    # Mail.ru (mailout.ru's list of Mail.ru errors): a new password or a
    # confirmation of the mailbox lifts it.
    b"550 message sending for this account is disabled\r\n",
    # Zoho Mail, a mailbox blocked for outgoing mail.
    b"554 5.1.8 Email Outgoing Blocked.\r\n",
    # Outlook.com, a free account suspended for suspected spam.
    b"554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a "
    b"permanent exception with message WASCL UserAction verdict is not None. Actual verdict is Suspend.\r\n",
]


@pytest.mark.parametrize("reply", SENDING_STOPPED, ids=["mail.ru", "zoho", "outlook"])
def test_a_mailbox_stopped_from_sending_stops_the_server_and_fails_no_letter(tenant_a, reply):
    script, server, mailing = through(reply, tenant_a)
    # Before the fix: every letter of the queue failed with the reply.
    assert not Letter.objects.filter(mailing=mailing, status=L.FAILED).exists(), statuses(mailing)
    assert len(script.bodies) == 1
    assert server.health == Health.FAILING
    assert "website" in server.health_hint, server.health_hint


# 4. A server that takes mail only after a login (or only encrypted), met
#    without one: the settings' fault, said at MAIL FROM.

NEEDS_A_LOGIN = [
    b"530 5.7.1 Authentication required\r\n",  # Postfix/Exim with a 5.7.1 (RFC 4954 says 5.7.0)
    b"530-5.7.0 Authentication Required. For more information, go to\r\n"
    b"530 5.7.0  https://support.google.com/mail/?p=WantAuthError\r\n",  # Gmail, multi-line
    b"530 5.7.0 Must issue a STARTTLS command first.\r\n",  # Gmail and Exchange on 587 without STARTTLS
]


@pytest.mark.parametrize("reply", NEEDS_A_LOGIN, ids=["5.7.1", "gmail", "starttls first"])
def test_a_server_that_wants_a_login_first_says_so_not_blacklisting(tenant_a, reply):
    _, server, mailing = through(reply, tenant_a, at="mail")
    assert not Letter.objects.filter(mailing=mailing, status=L.FAILED).exists(), statuses(mailing)
    assert server.health == Health.FAILING
    # Before the fix: "refuses mail from this sender or IP" with the
    # blacklisting hint (a 5.7.1), or no hint at all.
    assert "blacklist" not in server.health_hint.lower(), server.health_hint
    assert "login" in server.health_hint and "STARTTLS" in server.health_hint, server.health_hint


# 5. A Russian server's own words in its legacy code page (Windows-1251),
#    as old Windows and Kerio servers send them.


def test_a_reply_in_windows_1251_is_kept_readable(tenant_a):
    words = "Пользователь не найден"

    def answer(conn, line):
        if line[:4].upper() == b"RCPT":
            return b"550 5.1.1 " + words.encode("cp1251") + b"\r\n"
        return None

    with tarpit(Scripted(answer), lasts=5.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], ["gone@x.test"])
        settle(mailing, timezone.now())
    letter = Letter.objects.get(mailing=mailing)
    # Before the fix: "550 5.1.1 " and a row of U+FFFD, unreadable.
    assert (letter.status, letter.last_reply) == (L.FAILED, f"550 5.1.1 {words}")
