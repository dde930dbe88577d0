"""The corpus of real-shaped reports, appended over IMAP to a real Dovecot
and read by the bounce reader: each file's expected outcome."""

import pytest

from mailing.bounces import parser, readers
from mailing.models import BounceReport, Letter, Suppression

from .bounce_helpers import append, folder_messages, make_mailbox, render, sent_letters

pytestmark = pytest.mark.django_db
K = BounceReport.Kind
M = BounceReport.MatchedBy

# file -> (kind, matched by, status code, words in the reason); None: not a report
EXPECTED = {
    "postfix_user_unknown.eml": (K.HARD, M.HEADER, "5.1.1", "User unknown"),
    "exim_user_unknown.eml": (K.HARD, M.HEADER, "5.1.1", "User unknown"),
    "sendmail_user_unknown.eml": (K.HARD, M.HEADER, "5.1.1", "User unknown"),
    "exchange_o365_recipient_not_found.eml": (K.HARD, M.MESSAGE_ID, "5.1.10", "RecipientNotFound"),
    "gmail_account_does_not_exist.eml": (K.HARD, M.HEADER, "5.1.1", "does not exist"),
    "yandex_no_such_user.eml": (K.HARD, M.HEADER, "5.7.1", "No such user"),
    "mailru_invalid_mailbox.eml": (K.HARD, M.HEADER, "5.0.0", "invalid mailbox"),
    "qmail_user_unknown.eml": (K.HARD, M.HEADER, "5.1.1", "User unknown"),
    "greylisting_delayed.eml": (K.SOFT, M.HEADER, "4.7.1", "Greylisted"),
    "out_of_office.eml": (K.AUTO_REPLY, M.MESSAGE_ID, "", ""),
    "malformed.eml": (K.UNKNOWN, M.NONE, "", ""),
    "human_reply.eml": None,
}


def test_the_corpus_covers_every_file():
    from .bounce_helpers import CORPUS

    assert {p.name for p in CORPUS.glob("*.eml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_parser_reads_each_report(name):
    parsed = parser.parse(render(name, recipient="jane.roe@example.org"))
    expected = EXPECTED[name]
    if expected is None:
        assert parsed.kind is None
        return
    kind, _how, status, words = expected
    assert (parsed.kind, parsed.status) == (kind, status)
    assert words in parsed.diagnostic
    if kind in (K.HARD, K.SOFT):
        assert parsed.recipients == ["jane.roe@example.org"]


def test_each_report_in_the_mailbox_has_its_outcome(tenant_a, dovecot_mailbox):
    names = sorted(EXPECTED)
    letters = sent_letters(tenant_a, [f"r{i:02d}@example.org" for i in range(len(names))])
    letter_for = dict(zip(names, letters, strict=True))
    for name in names:
        append(dovecot_mailbox, render(name, letter_for[name]))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert result.status == "done", result.error
    for name, expected in EXPECTED.items():
        _assert_outcome(name, expected, letter_for[name], tenant_a)
    # Reports went to Postroute/Processed; the human reply and the
    # out-of-office reply stay in INBOX, unseen.
    inbox = folder_messages(dovecot_mailbox, "INBOX")
    assert sorted(s for s, _ in inbox) == ["Out of office: Hello there", "Re: Hello there"]
    assert all("\\Seen" not in flags for _, flags in inbox)
    assert len(folder_messages(dovecot_mailbox, "Postroute.Processed")) == 10
    mailbox.refresh_from_db()
    assert (mailbox.reports_found, mailbox.last_error, mailbox.health) == (10, "", "ok")
    assert mailbox.last_checked_at is not None


def _assert_outcome(name, expected, letter, tenant) -> None:
    letter.refresh_from_db()
    reports = list(BounceReport.objects.filter(tenant=tenant, letter=letter))
    suppression = Suppression.objects.filter(tenant=tenant, email=letter.email).first()
    if expected is None:
        assert reports == [] and suppression is None and letter.status == Letter.Status.SENT, name
        return
    kind, how, status, words = expected
    if how == M.NONE:  # unmatched: kept for the tenant, nothing changed
        assert reports == [] and suppression is None, name
        assert BounceReport.objects.filter(tenant=tenant, letter=None, kind=kind).count() == 1, name
        return
    [report] = reports
    assert (report.kind, report.matched_by, report.status) == (kind, how, status), name
    assert words in report.diagnostic, name
    if kind == K.HARD:
        assert letter.status == Letter.Status.BOUNCED and status in letter.last_reply, name
        assert suppression.reason == Suppression.Reason.HARD_BOUNCE, name
    else:  # soft once, auto-reply: recorded, not counted
        assert letter.status == Letter.Status.SENT and suppression is None, name
