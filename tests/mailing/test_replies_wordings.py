"""Real provider wordings against mailing.dispatch.replies.judge: what each
one means for the server, the tenant and the letter. Each case says where
the wording comes from."""

from datetime import timedelta

import pytest

from mailing.dispatch.replies import Kind, Stage, judge, turned_away

# No query is made; the mark only lets this file run alone (the session
# fixture of tests/conftest.py tears the test database down).
pytestmark = pytest.mark.django_db

CASES = [
    # A sender's quota spent, said with a 5xx: the letters wait, none fails.
    # Gmail (smtp.gmail.com), after DATA: https://support.google.com/mail/answer/22839,
    # reported as smtplib.SMTPDataError (550, b'5.4.5 Daily user sending quota exceeded. ...').
    (
        550,
        "550 5.4.5 Daily user sending quota exceeded. https://support.google.com/mail/?p=ReachedLimit",
        "dot",
        Kind.RATE_LIMIT,
    ),
    (550, "550 5.4.5 Daily user sending quota exceeded.", "mail", Kind.RATE_LIMIT),
    # Zoho Mail (help.zoho.com community: "Reason 550 5.4.6 mail rate exceeded limit").
    (550, "550 5.4.6 mail rate exceeded limit", "dot", Kind.RATE_LIMIT),
    # cPanel's Exim (https://forums.cpanel.net/threads/email-quota.697029/).
    (
        550,
        "550 Domain example.com has exceeded the max emails per hour (3/2 (150%)) allowed. Message discarded.",
        "rcpt",
        Kind.RATE_LIMIT,
    ),
    # Amazon SES SMTP (docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html).
    (454, "454 Throttling failure: Daily message quota exceeded.", "dot", Kind.RATE_LIMIT),
    (454, "454 Throttling failure: Maximum sending rate exceeded.", "dot", Kind.RATE_LIMIT),
    # A Russian hosting's rate limit, in its own words (UTF-8).
    (451, "451 4.7.1 Превышен лимит отправки писем, попробуйте позже", "mail", Kind.RATE_LIMIT),
    (550, "550 Слишком много писем с ящика", "dot", Kind.RATE_LIMIT),
    # One full mailbox is the recipient's, never the server's rate limit.
    # Yandex: https://yandex.com/support/mail/bounces/yandex/mailbox-size-limit-exceeded.html
    (452, "452 4.2.2 Mailbox size limit exceeded", "rcpt", Kind.TEMPORARY),
    (452, "452 4.2.2 Mailbox size limit exceeded", "dot", Kind.TEMPORARY),
    # Gmail's full mailbox, and a permanent one (errcodes.dev 5.2.2).
    (452, "452-4.2.2 The email account that you tried to reach is over quota.", "rcpt", Kind.TEMPORARY),
    (552, "552 5.2.2 Mailbox full", "rcpt", Kind.REFUSED),
    # Unknown users whatever the enhanced code. Yandex lists "No such user"
    # (https://yandex.com/support/mail/bounces/yandex.html) and answers it with 5.7.1.
    (550, "550 5.7.1 No such user!", "rcpt", Kind.BAD_ADDRESS),
    # Mail.ru ("User not found", mailout.ru's list of Mail.ru errors; Yandex's
    # list for other providers names "Invalid mailbox" and "User not found").
    (
        550,
        "550 Message was not accepted -- invalid mailbox. Local mailbox x@mail.ru is unavailable: user not found",
        "rcpt",
        Kind.BAD_ADDRESS,
    ),
    # ... but a policy refusal of a recipient is not an unknown user.
    (550, "550 5.7.1 Recipient rejected by policy", "rcpt", Kind.REFUSED),
    # Our own sender refused at RCPT (Postfix judges MAIL FROM there with
    # smtpd_delay_reject=yes, its default; postfix.org/postconf.5.html):
    # reject_sender_login_mismatch, Yandex's wording of it, and
    # reject_unknown_sender_domain. No letter can pass: the server's, not the
    # recipient's (and never a hard bounce of the recipient).
    (
        553,
        "553 5.7.1 <robot@mail.test>: Sender address rejected: not owned by user other@mail.test",
        "rcpt",
        Kind.SENDER_REFUSED,
    ),
    (553, "553 5.7.1 Sender address rejected: not owned by auth user.", "rcpt", Kind.SENDER_REFUSED),
    (550, "550 5.1.8 <robot@nowhere.test>: Sender address rejected: Domain not found", "rcpt", Kind.SENDER_REFUSED),
    # Relaying denied (no login, or one that may not relay) concerns the
    # server and the login the same way: Postfix, Sendmail, Exim, Exchange.
    (554, "554 5.7.1 <a@x.test>: Relay access denied", "rcpt", Kind.SENDER_REFUSED),
    (550, "550 5.7.1 <a@x.test>... Relaying denied", "rcpt", Kind.SENDER_REFUSED),
    (550, "550 relay not permitted", "rcpt", Kind.SENDER_REFUSED),
    (550, "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain", "rcpt", Kind.SENDER_REFUSED),
    # No login given to a server that wants one, said at RCPT (Exim): the
    # server's settings, not the recipient's address.
    (550, "550 Authentication required", "rcpt", Kind.SENDER_REFUSED),
    # What the dispatcher already judged right stays so.
    (550, "550 5.1.1 <gone@x.test>: Recipient address rejected: User unknown", "rcpt", Kind.BAD_ADDRESS),
    (
        450,
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional "
        "messages from being delivered.",
        "rcpt",
        Kind.TEMPORARY,
    ),
    (450, "450 4.2.0 <a@x.test>: Recipient address rejected: Greylisted", "rcpt", Kind.TEMPORARY),
    (450, "450 4.7.1 Error: too much mail from 127.0.0.1", "mail", Kind.RATE_LIMIT),
    (
        554,
        "554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org",
        "rcpt",
        Kind.BLACKLISTED,
    ),
    (554, "554 5.7.1 Message rejected under suspicion of SPAM", "dot", Kind.CONTENT),
    # A link in the message on a list of links or domains (URIBL, SURBL,
    # Spamhaus DBL) refuses that message, not the server: the next letter
    # without the link passes. Before: a blacklisting, which takes a
    # tenant's own server out of use.
    (554, "554 5.7.1 Message rejected: URL listed in multi.uribl.com", "dot", Kind.CONTENT),
    (550, "550 5.7.1 Message contains a link listed in Spamhaus DBL", "dot", Kind.CONTENT),
    (550, "550 5.7.1 Blocked: a URI in the message body is listed at multi.surbl.org", "dot", Kind.CONTENT),
    # The sending host or our sender's domain on a list is still the
    # server's, after DATA too, and whichever list says it.
    (554, "554 5.7.1 Client host [203.0.113.7] listed at zen.spamhaus.org", "dot", Kind.BLACKLISTED),
    (
        554,
        "554 5.7.1 Service unavailable; Sender address [robot@acme.test] blocked using dbl.spamhaus.org;"
        " https://www.spamhaus.org/query/dbl?domain=acme.test",
        "rcpt",
        Kind.BLACKLISTED,
    ),
    (550, "550 5.7.1 Your IP is listed at multi.uribl.com", "dot", Kind.BLACKLISTED),
    # A settings refusal said with a 4xx is no less the server's: Postfix's
    # default smtpd_relay_restrictions end with defer_unauth_destination.
    (454, "454 4.7.1 <r@elsewhere.test>: Relay access denied", "rcpt", Kind.SENDER_REFUSED),
    (450, "450 4.7.1 <a@x.test>: Sender address rejected: not owned by user b@x.test", "rcpt", Kind.SENDER_REFUSED),
    # ... but a sender domain that could not be looked up for now waits.
    (450, "450 4.1.8 <a@x.test>: Sender address rejected: Domain not found", "rcpt", Kind.TEMPORARY),
]


@pytest.mark.parametrize("code, reply, stage, kind", CASES, ids=[c[1][:60] for c in CASES])
def test_real_wordings(code, reply, stage, kind):
    assert judge(code, reply, Stage(stage)).kind == kind


def test_a_spent_daily_quota_waits_an_hour_not_a_minute():
    verdict = judge(550, "550 5.4.5 Daily user sending quota exceeded.", Stage.DOT)
    assert verdict.wait == timedelta(hours=1)


def test_the_dispatchers_own_notes_are_shown_in_the_readers_language():
    from django.utils import translation

    from mailing.dispatch.replies import CONNECTION_LOST, LOST_NOTE, shown_reply

    stored = LOST_NOTE + CONNECTION_LOST + "[Errno 104] Connection reset by peer"
    assert shown_reply(stored) == stored  # English as stored
    with translation.override("ru"):
        assert shown_reply(stored) == (
            "Не отправлено: соединение прервалось до конца письма: соединение потеряно: "
            "[Errno 104] Connection reset by peer"
        )
        server = "550 5.1.1 <a@x.test>: Recipient address rejected: User unknown"
        assert shown_reply(server) == server  # the server's own words stay as they came


@pytest.mark.parametrize(
    "code, reply, alone",
    [
        # The number of our connections: this connection is one too many.
        (421, "421 4.7.0 mx.example.test Error: too many connections from 10.0.0.1", True),  # Postfix anvil
        (421, "421 Too many concurrent SMTP connections from this IP address; please try again later.", True),  # Exim
        (421, "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit", True),  # Exchange
        (432, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", True),  # Microsoft 365
        (421, "421 Too many connections from your IP", True),  # Mail.ru
        # No reason but "later": nothing says it is the account's mail.
        (421, "421 4.7.0 Try again later, closing connection. (EHLO)", True),  # Gmail
        (421, "421 4.3.2 Service currently unavailable", True),  # Postfix postscreen
        # The rate of the account's or the IP's mail: the server rests.
        (421, "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP", False),
        (421, "421 4.7.0 Error: too much mail from 10.0.0.1", False),
        (421, "421 Ratelimit exceeded, try again later", False),
        # Not a 4xx: no such judgement (diagnosed as the server's refusal).
        (554, "554 5.7.1 Too many connections", False),
    ],
)
def test_a_refused_greeting_concerns_that_connection_unless_it_speaks_of_the_rate_of_mail(code, reply, alone):
    assert turned_away(code, reply) is alone


@pytest.mark.parametrize(
    "code, reply, stage, too_big",
    [
        (552, "552 5.3.4 Error: message file too big", "dot", True),  # Postfix message_size_limit
        (552, "552 Message size exceeds maximum permitted", "dot", True),  # Exim message_size_limit
        (552, "552-5.2.3 Your message exceeded Google's message size limits. Please visit", "dot", True),  # Gmail
        (552, "552 5.3.4 Message size exceeds fixed maximum message size", "data", True),  # Yandex
        (552, "552 5.2.2 Mailbox full", "dot", False),  # the recipient's mailbox, not the letter's size
        (552, "552 5.2.2 <a@x.test>: Mailbox full", "rcpt", False),
    ],
)
def test_a_letter_refused_for_its_size_keeps_a_sentence_saying_so(code, reply, stage, too_big):
    from mailing.dispatch.replies import TOO_BIG_NOTE, kept_reply

    kept = kept_reply(judge(code, reply, Stage(stage)), Stage(stage))
    assert kept == (TOO_BIG_NOTE + reply if too_big else reply)


@pytest.mark.parametrize(
    "code, reply, cap",
    [
        # This connection's count of letters: a new connection takes the next.
        (421, "421 mx.example.test too many messages in this connection", True),  # Exim, Amazon SES
        (421, "421 too many messages in one connection", True),
        (452, "452 4.3.1 Too many messages in this session", True),
        (421, "421 4.3.2 Message limit per session reached, closing transmission channel", True),  # Microsoft
        (421, "421 Max message per connection reached, closing transmission channel", True),  # Yahoo
        (451, "451 too many messages per connection", True),  # qmail
        (421, "421 4.7.0 Maximum number of messages per session exceeded", True),
        (554, "554 5.7.0 Too many messages in this connection", True),
        # Amazon SES (knadh/listmonk#1717, #2683), Stalwart (stalwartlabs/stalwart#1384, to DATA).
        (421, "421 Connection closed by server. Too many messages in one session", True),
        (421, "421 Connection closed by server. Maximum message count per session reached.", True),
        (452, "452 4.4.5 Maximum number of messages per session exceeded.", True),
        # The client's rate, its own quota, or no count at all: not a cap.
        (452, "452 4.3.1 Error: too many messages from 10.0.0.1", False),  # Postfix smtpd_client_message_rate_limit
        (450, "450 4.7.1 Error: too many messages from [10.0.0.1], try again later", False),
        (421, "421 4.7.0 Too many messages per hour in this session", False),
        (452, "452 4.3.1 Too many messages in this session, try again in 60 seconds", False),
        (550, "550 Too many messages. Try again in 92 seconds.", False),
        (421, "421 Too many concurrent SMTP connections; please try again later.", False),
        (550, "550 5.7.1 Message rejected for this session's sender policy", False),
        (250, "250 2.0.0 Ok: queued, 3 messages in this session", False),
    ],
)
def test_a_cap_on_the_letters_of_one_connection_is_told_from_a_rate(code, reply, cap):
    from mailing.dispatch.replies import per_connection_cap

    assert per_connection_cap(code, reply) is cap


@pytest.mark.parametrize(
    "code, reply, stage, kind, too_big",
    [
        # To MAIL FROM's SIZE (RFC 1870): the letter's, not our sender's.
        (552, "552 5.3.4 Message size exceeds fixed maximum message size", "mail", Kind.REFUSED, True),  # Postfix
        (552, "552 Error: message size exceeds fixed maximum message size", "mail", Kind.REFUSED, True),  # aiosmtpd
        (552, "552 Message size exceeds maximum permitted", "mail", Kind.REFUSED, True),  # Exim
        # Our sender refused at MAIL stays the server's.
        (550, "550 5.7.1 Spam rejected: your IP is listed", "mail", Kind.SENDER_REFUSED, False),
        # A full mailbox is no size of the letter, wherever it is said.
        (552, "552 5.2.2 Mailbox size limit exceeded", "dot", Kind.REFUSED, False),
    ],
)
def test_a_size_refused_at_mail_fails_the_letter_not_the_server(code, reply, stage, kind, too_big):
    from mailing.dispatch.replies import TOO_BIG_NOTE, kept_reply

    verdict = judge(code, reply, Stage(stage))
    assert verdict.kind == kind
    if kind == Kind.REFUSED:
        assert kept_reply(verdict, Stage(stage)) == (TOO_BIG_NOTE + reply if too_big else reply)


def test_a_letter_above_the_servers_size_keeps_both_sizes_in_the_readers_language():
    from django.utils import translation

    from mailing.dispatch.replies import shown_reply, too_big_reply

    stored = too_big_reply(20480, 10240)
    assert (
        stored == "The letter is larger than the server takes: 20480 bytes, the server's maximum is 10240 (its SIZE)."
    )
    assert shown_reply(stored) == stored
    with translation.override("ru"):
        assert shown_reply(stored) == (
            "Письмо больше, чем принимает сервер: 20480 байт, а сервер принимает не более 10240 байт (его SIZE)."
        )
    with translation.override("vi"):
        assert shown_reply(stored).startswith("Thư lớn hơn mức máy chủ chấp nhận: 20480 byte")
