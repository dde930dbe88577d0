"""What a server's reply to one letter means (DOMAIN.md §7), and whom it
concerns: the server as a whole, the tenant whose letter it was, or that one
letter. Providers word the same thing in many ways; the judgement goes by
the stage of the exchange, the code, the enhanced status code and the words.

- A rate limit ("too much mail", "rate limit", 4.7.x with such words; the
  wordings of Postfix, Gmail, Yandex and Mail.ru) is not trouble: the server
  waits for the provider's window and the letter goes later, uncounted.
- A refusal of the sending IP or host (an RBL, "blocked using", "listed",
  "client host", "your IP") is a blacklisting: no letter can pass.
- A refusal of one message's content (spam-looking, a virus, a policy on
  this message) fails that letter only.
- 5.1.x at RCPT (user or domain unknown) is a bad address: the letter fails
  and the address is suppressed as a hard bounce would; other permanent
  refusals of a recipient (5.7.x policy) fail the letter only.
- Other temporary refusals at RCPT or after DATA may be the recipient's
  (greylisting) or the server's (a 451 to everything): the batch tells them
  apart by counting them in a row (mailing.dispatch.batch).
- A sender's quota spent is a rate limit even when said with a 5xx (Gmail's
  "550 5.4.5 Daily user sending quota exceeded", cPanel's "has exceeded the
  max emails per hour"): it frees by itself, so the letters wait.
- A refusal of our own sender at RCPT ("Sender address rejected", Postfix
  judging MAIL FROM at RCPT with smtpd_delay_reject) or after the message
  (Yandex and Mail.ru judge the From header there: the login may not send
  from it) is the server's, not the recipient's nor the letter's: no letter
  could pass; nor can one from a mailbox the provider stopped from sending
  (Mail.ru "message sending for this account is disabled"). So is "Relay
  access denied" at RCPT (no login, or one that may not relay): it
  concerns the server. Said with a 4xx (Postfix's default
  defer_unauth_destination: "454 4.7.1 Relay access denied"), they are
  the same settings problem, which no retry mends."""

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.utils.translation import gettext, gettext_noop

from servers.errors import LOGIN_FIRST, NOT_ITS_SENDER, RELAY_DENIED, SENDING_STOPPED, is_blacklisting

from ..withdrawals import WITHDRAWN_NOTES


class Stage(StrEnum):
    MAIL = "mail"  # the reply to MAIL FROM (or the connection's own 421)
    RCPT = "rcpt"
    DATA = "data"  # the reply to the DATA command
    DOT = "dot"  # the reply after the message: the server's verdict on it


class Kind(StrEnum):
    RATE_LIMIT = "rate_limit"  # server: wait for the provider's window
    SERVER_BUSY = "server_busy"  # server: 421, or a 4xx to MAIL FROM
    SENDER_REFUSED = "sender_refused"  # server: 5xx to our own MAIL FROM
    BLACKLISTED = "blacklisted"  # server (or, on the platform, the tenant)
    CONTENT = "content"  # letter fails; repeated ones rest the tenant
    BAD_ADDRESS = "bad_address"  # letter fails, address suppressed
    REFUSED = "refused"  # letter fails
    TEMPORARY = "temporary"  # letter waits; many in a row rest the server


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    code: int
    reply: str  # "550 5.1.1 ...": the code and the server's words
    wait: timedelta | None = None  # rate limits: how long the provider asks

    @property
    def words(self) -> str:
        """The reply without its code, as smtplib's exceptions hold it."""
        return self.reply.removeprefix(str(self.code)).strip()


# A sending limit spent, in Russian ("Превышен лимит отправки писем",
# "слишком много писем"): said of the rate and of the quota alike.
RU_SEND_LIMIT = r"лимит\w* (на )?(отправк|исходящ)|(отправк|исходящ)\w*.{0,30}лимит|слишком много (писем|сообщений)"
# The rate of the account's (or the IP's) mail: what rests the server.
MAIL_RATE_WORDS = re.compile(
    r"too (much|many) (mail|messages|emails|recipients)|rate.?limit|ratelimit|sending rate"
    r"|unusual rate|rate of (unsolicited )?mail|too fast|slow down|exceeded.{0,30}(limit|quota)|limit exceeded"
    r"|message quota"
    rf"|{RU_SEND_LIMIT}",
    re.IGNORECASE,
)
RATE_WORDS = re.compile(
    rf"{MAIL_RATE_WORDS.pattern}|too many connections|try again later|please come back later", re.IGNORECASE
)
# The number of our connections at once, not the rate of our mail: Postfix
# (anvil) "421 4.7.0 <host> Error: too many connections from <ip>", Exim
# "421 Too many concurrent SMTP connections[ from this IP address]; please
# try again later.", Exchange and Microsoft 365 "421 4.3.2 The maximum
# number of concurrent server connections has exceeded a limit" and "432
# 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", Mail.ru "421
# Too many connections from your IP", Postfix's postscreen "421 4.3.2 All
# server ports are busy".
CONNECTION_COUNT = re.compile(
    r"too many (concurrent |simultaneous |open )?(smtp )?(connections|sessions)"
    r"|(concurrent|simultaneous) (server |smtp )?connections|connection (count )?limit|thread limit"
    r"|ports are busy",
    re.IGNORECASE,
)
# A recipient's own state: its mailbox is full or receives too fast (Gmail's
# 4.2.1), or greylisting; these concern one letter, not the server. Yandex
# says a full mailbox with "Mailbox size limit exceeded".
RECIPIENT_WORDS = re.compile(
    r"greylist|graylist|mailbox (is )?full|over quota|receiving mail at a rate|mailbox size|user quota|disk quota",
    re.I,
)
# A sender's own quota or rate, spent; said with a 5xx by some providers
# though it frees by itself: Gmail "550 5.4.5 Daily user sending quota
# exceeded", Zoho "550 5.4.6 mail rate exceeded limit", cPanel "550 Domain
# x has exceeded the max emails per hour (3/2 (150%)) allowed", Microsoft
# 365 "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
# Outlook.com "... OutboundSpamException; ... Actual verdict is RefuseQuota",
# "554 5.7.0 ... The limit on the number of allowed outgoing messages was
# exceeded", msndr.net "550 Too many messages. Try again in 92 seconds.",
# and a Russian hosting's "Превышен лимит отправки писем".
SENDER_QUOTA_WORDS = re.compile(
    r"sending (quota|limit)|daily (user )?(sending )?(quota|limit)|message quota|max(imum)? (emails|messages) per"
    r"|rate exceeded|rate.?limit|ratelimit|too many (messages|mails|emails)"
    r"|outgoing (messages?|mails?|emails?)\b.{0,40}(limit|quota|exceeded)|(limit|quota) (on|of) .{0,30}outgoing"
    rf"|{RU_SEND_LIMIT}",
    re.IGNORECASE,
)
# Microsoft's submission store names the sending mailbox's quota, whatever
# its enhanced code (5.2.0, the code of a mailbox's status elsewhere).
SUBMISSION_QUOTA = re.compile(r"submissionquotaexceeded|verdict is refusequota", re.IGNORECASE)
QUOTA_WAIT = timedelta(hours=1)
# Our own MAIL FROM refused, in the reply to RCPT (Postfix checks the sender
# there by default): Postfix "553 5.7.1 <a@x>: Sender address rejected: not
# owned by user b@x", Yandex "553 5.7.1 Sender address rejected: not owned
# by auth user.", "550 5.1.8 <a@x>: Sender address rejected: Domain not found".
# The login may not send from the letter's sender, said at RCPT or after
# the message as well (servers.errors.NOT_ITS_SENDER): no letter can pass.
SENDER_WORDS = re.compile(rf"sender address rejected|{NOT_ITS_SENDER.pattern}", re.IGNORECASE)
CONTENT_WORDS = re.compile(
    r"spam|virus|malware|phishing|content|message rejected|rejected as|suspicio|policy|not accepted"
    r"|unsolicited|blocked message",
    re.IGNORECASE,
)
# A content refusal that calls the letter spam: Yandex "Message rejected
# under suspicion of SPAM", Mail.ru "spam message rejected", Gmail "likely
# unsolicited mail", Microsoft "content identified as spam".
SPAM_WORDS = re.compile(r"spam|unsolicited|junk", re.IGNORECASE)
UNKNOWN_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn'?t exist"
    r"|recipient (address )?rejected: user|mailbox (not found|unavailable)|address rejected|invalid recipient"
    r"|user not found|invalid mailbox",
    re.IGNORECASE,
)
# Words that name an unknown user whatever the enhanced code beside them:
# Yandex says "550 5.7.1 No such user!", Mail.ru "550 Message was not
# accepted -- invalid mailbox. Local mailbox x@mail.ru is unavailable: user
# not found".
UNKNOWN_USER = re.compile(r"user unknown|unknown user|no such (user|mailbox)|user not found", re.IGNORECASE)
ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
WAIT = re.compile(r"(?:in|after|for|wait)\s+(\d{1,5})\s*(s|sec|second|m|min|minute|h|hour)", re.IGNORECASE)
DEFAULT_RATE_WAIT = timedelta(minutes=1)
MAX_RATE_WAIT = timedelta(hours=1)


def judge(code: int, reply: str, stage: Stage) -> Verdict:
    enhanced = _enhanced(reply)
    if 400 <= code < 500 and _rate_limited(reply, enhanced, stage):
        return Verdict(Kind.RATE_LIMIT, code, reply, rate_wait(reply))
    if code >= 500 and _quota_spent(reply, enhanced):
        return Verdict(Kind.RATE_LIMIT, code, reply, rate_wait(reply) if WAIT.search(reply) else QUOTA_WAIT)
    if code < 500 and _settings_refused(reply, stage):
        return Verdict(Kind.SENDER_REFUSED, code, reply)
    if stage == Stage.MAIL and code >= 500 and _too_big(reply):
        # The letter's SIZE (RFC 1870), refused at MAIL: not our sender.
        return Verdict(Kind.REFUSED, code, reply)
    if stage == Stage.MAIL:
        return Verdict(Kind.SENDER_REFUSED if code >= 500 else Kind.SERVER_BUSY, code, reply)
    if code == 421:
        return Verdict(Kind.SERVER_BUSY, code, reply)
    if code < 500:
        return Verdict(Kind.TEMPORARY, code, reply)
    # Yandex and Mail.ru check the From header after the message; a mailbox
    # stopped from sending is refused there too, and a missing login at RCPT.
    if SENDER_WORDS.search(reply) or SENDING_STOPPED.search(reply) or LOGIN_FIRST.search(reply):
        return Verdict(Kind.SENDER_REFUSED, code, reply)
    if stage == Stage.RCPT and RELAY_DENIED.search(reply):
        return Verdict(Kind.SENDER_REFUSED, code, reply)
    # 5.1.x first: Domino says a user is unknown with "not listed".
    if stage == Stage.RCPT and enhanced[:2] == ("5", "1"):
        return Verdict(Kind.BAD_ADDRESS, code, reply)
    if is_blacklisting(code, reply, at_recipient=True):
        return Verdict(Kind.BLACKLISTED, code, reply)
    if stage == Stage.RCPT and (UNKNOWN_USER.search(reply) or (not enhanced and UNKNOWN_WORDS.search(reply))):
        return Verdict(Kind.BAD_ADDRESS, code, reply)
    if stage == Stage.DOT and (enhanced[:2] in {("5", "7"), ("5", "6")} or CONTENT_WORDS.search(reply)):
        return Verdict(Kind.CONTENT, code, reply)
    return Verdict(Kind.REFUSED, code, reply)


# A server's cap on the letters of one connection, said to the letter over
# it: Exim's smtp_accept_max_per_connection and Amazon SES "421 too many
# messages in this connection", Yahoo "421 Max message per connection
# reached, closing transmission channel", Microsoft "421 4.3.2 Message limit
# per session reached", "452 4.3.1 Too many messages in this session",
# qmail "451 too many messages per connection".
PER_CONNECTION = re.compile(
    r"\b(messages?|mails?|emails?|transactions?)\b[^.;,]{0,30}?\b(per|in|on|for) (this |one |the |a |each |a single )?"
    r"(smtp )?(connection|session)\b|\b(connection|session)'?s? (message|mail|transaction) (limit|count)",
    re.IGNORECASE,
)
# ... and says it is a count ("Message rejected for this session" is not).
COUNT_WORDS = re.compile(r"too many|\bmax|limit|exceed|number of|reached", re.IGNORECASE)
# The client's rate, whatever else it says: Postfix's
# smtpd_client_message_rate_limit "452 4.3.1 Error: too many messages from
# 10.0.0.1", "per hour", "try again in 60 seconds" (WAIT).
CLIENT_RATE = re.compile(r"\bfrom \S|\bper (second|minute|hour|day)\b|\b(hourly|daily)\b", re.IGNORECASE)


def per_connection_cap(code: int, reply: str) -> bool:
    """The server takes so many letters a connection and this one is over
    it: the letter goes again over a new connection, nothing rests
    (mailing.dispatch.batch; said to the first letter of a connection, it
    is a refusal like another, judged as one)."""
    if not 400 <= code < 600 or not (PER_CONNECTION.search(reply) and COUNT_WORDS.search(reply)):
        return False
    return not CLIENT_RATE.search(reply) and not WAIT.search(reply)


def turned_away(code: int, reply: str) -> bool:
    """A 4xx that greets a new connection (or answers its EHLO) and refuses
    that connection, not the account's mail: the number of our connections
    at once (CONNECTION_COUNT), or no reason but "try again later" (Gmail
    "421 4.7.0 Try again later, closing connection.", Postfix "421 4.3.2
    Service currently unavailable"). Beside our other conversations with
    the server it concerns this one only (mailing.dispatch.batch). A reply
    that speaks of the rate of mail (Gmail "421 4.7.28 ... unusual rate of
    unsolicited mail", "too much mail") is the account's: the server rests."""
    if not 400 <= code < 500:
        return False
    return bool(CONNECTION_COUNT.search(reply)) or not MAIL_RATE_WORDS.search(reply)


def _settings_refused(reply: str, stage: Stage) -> bool:
    """A settings refusal said as a 4xx, which no waiting mends: Postfix's
    default smtpd_relay_restrictions end with defer_unauth_destination,
    "454 4.7.1 <r>: Relay access denied"; its soft_bounce says "450 4.7.1
    <a@x>: Sender address rejected: not owned by user b@x". (A bare "Sender
    address rejected" as a 4xx is a DNS lookup of our domain that failed
    for now: it waits.)"""
    if NOT_ITS_SENDER.search(reply) or SENDING_STOPPED.search(reply) or LOGIN_FIRST.search(reply):
        return True
    return stage in (Stage.MAIL, Stage.RCPT) and bool(RELAY_DENIED.search(reply))


def _enhanced(reply: str) -> tuple[str, str, str] | tuple[()]:
    found = ENHANCED.search(reply)
    return found.groups() if found else ()


def _rate_limited(reply: str, enhanced: tuple, stage: Stage) -> bool:
    # X.1.x and X.2.x are the address's and the mailbox's status (RFC 3463):
    # "452 4.2.2 Mailbox size limit exceeded" is one full mailbox.
    if RECIPIENT_WORDS.search(reply) or enhanced[1:2] in (("1",), ("2",)):
        return False
    # "Try again later" alone is what greylisting says at RCPT: there only
    # explicit rate wording counts.
    if stage == Stage.RCPT and not re.search(r"rate|too (much|many)|exceeded", reply, re.I):
        return False
    return bool(RATE_WORDS.search(reply)) and (not enhanced or enhanced[0] == "4")


def _quota_spent(reply: str, enhanced: tuple) -> bool:
    if SUBMISSION_QUOTA.search(reply):
        return True
    if RECIPIENT_WORDS.search(reply) or enhanced[1:2] in (("1",), ("2",)):
        return False
    return bool(SENDER_QUOTA_WORDS.search(reply))


def rate_wait(reply: str) -> timedelta:
    """How long the provider asks us to wait: a minute unless it says."""
    found = WAIT.search(reply)
    if not found:
        return DEFAULT_RATE_WAIT
    amount, unit = int(found.group(1)), found.group(2).lower()
    seconds = amount * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1)
    return min(max(timedelta(seconds=seconds), timedelta(seconds=10)), MAX_RATE_WAIT)


# What the dispatcher itself writes as a letter's last reply: in English in
# the database (it matches some of these prefixes later), shown in the
# reader's language (shown_reply), the server's own words after it as they
# came.
# A letter given back in a storm keeps STORM_NOTE: refused again, it was the
# recipient's refusal after all, and it counts. One given back after losing
# the connection before its final dot keeps LOST_NOTE: lost again, it counts.
# One whose connection was lost after its final dot, before the server's
# reply, keeps UNSURE_NOTE: it may have been delivered, so it goes out once
# more (it may as well have been lost) and, lost so again, never a third
# time: it fails with NOT_AGAIN_NOTE before the rest.
STORM_NOTE = gettext_noop("Refused with every other letter for now: ")
LOST_NOTE = gettext_noop("Not sent, the connection was lost before the end of the letter: ")
UNSURE_NOTE = gettext_noop(
    "The connection was lost after the end of the letter, before the server's answer; it may have been delivered: "
)
NOT_AGAIN_NOTE = gettext_noop("Not sent again, so that the recipient does not get it a third time. ")
# A letter refused for its size keeps TOO_BIG_NOTE before the server's
# words, which are often terse (aiosmtpd "552 Error: Too much mail data",
# Postfix "552 5.3.4 Error: message file too big").
TOO_BIG_NOTE = gettext_noop("The letter is larger than the server takes: ")
# One larger than the SIZE the server announces (RFC 1870) is not sent: it
# keeps TOO_BIG_NOTE and OVER_SIZE, with both sizes (too_big_reply).
OVER_SIZE = gettext_noop("%(size)s bytes, the server's maximum is %(limit)s (its SIZE).")
NOT_BUILT = gettext_noop("The message could not be built: ")
UNEXPECTED = gettext_noop("Unexpected error while sending: ")
CONNECTION_LOST = gettext_noop("connection lost: ")
# A letter withdrawn because its address was suppressed (mailing.withdrawals)
# carries one of WITHDRAWN_NOTES, the whole reply.
OWN_NOTES = (
    STORM_NOTE,
    LOST_NOTE,
    UNSURE_NOTE,
    NOT_AGAIN_NOTE,
    TOO_BIG_NOTE,
    NOT_BUILT,
    UNEXPECTED,
    CONNECTION_LOST,
    *WITHDRAWN_NOTES.values(),
)


# The size of the message (RFC 3463's X.3.4 "message too big for system"
# and X.2.3 "message length exceeds administrative limit", and the words of
# servers that give no enhanced code), said to DATA or after the message.
TOO_BIG_WORDS = re.compile(
    r"too (big|large)|(message|mail) size|size (limit|exceed)|exceed\w* .{0,30}size|too much mail data"
    r"|message length",
    re.IGNORECASE,
)


def _too_big(reply: str) -> bool:
    """A refusal of the letter's size, not of a full mailbox ("552 5.2.2
    Mailbox size limit exceeded")."""
    if _enhanced(reply)[1:] in (("3", "4"), ("2", "3")):
        return True
    return bool(TOO_BIG_WORDS.search(reply)) and not RECIPIENT_WORDS.search(reply)


def kept_reply(verdict: Verdict, stage: Stage) -> str:
    """What a refused letter keeps: the server's reply, after TOO_BIG_NOTE
    when it refused the letter's size (each letter of a template too big
    fails so; the server does not rest for it): to its SIZE at MAIL, to
    DATA or after the message."""
    if stage != Stage.RCPT and verdict.code >= 500 and _too_big(verdict.reply):
        return TOO_BIG_NOTE + verdict.reply
    return verdict.reply


def too_big_reply(size: int, limit: int) -> str:
    """What a letter larger than the server's announced SIZE keeps."""
    return TOO_BIG_NOTE + OVER_SIZE % {"size": size, "limit": limit}


# OVER_SIZE as stored, to be shown in the reader's language.
_OVER_SIZE = re.compile(
    re.escape(OVER_SIZE)
    .replace(re.escape("%(size)s"), r"(?P<size>\d+)")
    .replace(re.escape("%(limit)s"), r"(?P<limit>\d+)")
)


def shown_reply(reply: str) -> str:
    """A letter's last reply as its reader sees it: the dispatcher's own
    notes translated (one after another: a lost connection inside a note),
    the server's words untouched."""
    shown = ""
    while note := next((note for note in OWN_NOTES if reply.startswith(note)), None):
        shown += gettext(note)
        reply = reply[len(note) :]
    if sizes := _OVER_SIZE.fullmatch(reply):
        return shown + gettext(OVER_SIZE) % sizes.groupdict()
    return shown + reply
