"""The corpus of real-shaped reports (tests/fixtures/bounces/): what the
parser makes of each one (kind, recipient, status, the words of the
reason), then the same files appended over IMAP to a real Dovecot and read
by the bounce reader, each with its outcome."""

import pytest

from mailing.bounces import parser, readers
from mailing.models import BounceReport, Letter, Suppression

from .bounce_helpers import CORPUS, append, folder_messages, make_mailbox, render, sent_letters

K = BounceReport.Kind
M = BounceReport.MatchedBy
R = "jane.roe@example.org"  # the recipient the parser tests fill in

# file -> (kind, recipient, status, matched by, words in the reason); kind None: not a report
EXPECTED = {
    # unknown user, unknown domain
    "postfix_user_unknown.eml": (K.HARD, R, "5.1.1", M.HEADER, "User unknown in virtual mailbox table"),
    "exim_user_unknown.eml": (K.HARD, R, "5.1.1", M.HEADER, "User unknown"),
    "sendmail_user_unknown.eml": (K.HARD, R, "5.1.1", M.HEADER, "User unknown"),
    "qmail_user_unknown.eml": (K.HARD, R, "5.1.1", M.HEADER, "User unknown"),
    "qmail_no_mailbox_here.eml": (K.HARD, R, "5.1.1", M.HEADER, "no mailbox here by that name"),
    "exchange_o365_recipient_not_found.eml": (K.HARD, R, "5.1.10", M.MESSAGE_ID, "RecipientNotFound"),
    "exchange_text_only_help_sentence.eml": (
        K.HARD,
        R,
        "5.1.1",
        M.MESSAGE_ID,
        "5.1.1 RESOLVER.ADR.ExRecipNotFound",
    ),
    "exchange_russian_ndr_text_only.eml": (K.HARD, R, "5.1.1", M.MESSAGE_ID, "5.1.1 RESOLVER.ADR.RecipNotFound"),
    # Exchange quotes the reply in apostrophes in every language, after words or before them
    "exchange_vietnamese_ndr_text_only.eml": (K.HARD, R, "5.1.1", M.MESSAGE_ID, "5.1.1 RESOLVER.ADR.RecipNotFound"),
    "exchange_german_ndr_text_only.eml": (K.HARD, R, "5.1.1", M.MESSAGE_ID, "5.1.1 RESOLVER.ADR.RecipNotFound"),
    "outlook_com_mailbox_unavailable.eml": (K.HARD, R, "5.5.0", M.HEADER, "mailbox unavailable"),
    "gmail_account_does_not_exist.eml": (K.HARD, R, "5.1.1", M.HEADER, "550 5.1.1 The email account"),
    "yandex_no_such_user.eml": (K.HARD, R, "5.7.1", M.HEADER, "No such user"),
    "mailru_invalid_mailbox.eml": (K.HARD, R, "550", M.HEADER, "550 Message was not accepted -- invalid mailbox"),
    "mailru_russian_only_no_failed_header.eml": (K.HARD, R, "5.1.1", M.HEADER, "address does not exist"),
    # no code at all: the words alone, in Vietnamese and in Russian
    "vietnamese_provider_address_does_not_exist.eml": (K.HARD, R, "", M.MESSAGE_ID, "Địa chỉ email không tồn tại"),
    "russian_hosting_no_such_mailbox.eml": (K.HARD, R, "", M.MESSAGE_ID, "Такого почтового ящика нет"),
    "yahoo_no_account.eml": (K.HARD, R, "554", M.HEADER, "554 delivery error: dd This user doesn't have"),
    "postfix_domain_not_found.eml": (K.HARD, R, "5.4.4", M.HEADER, "Host or domain name not found"),
    "exim_unrouteable_address.eml": (K.HARD, R, "", M.HEADER, "Unrouteable address"),
    "sendmail_host_unknown.eml": (K.HARD, R, "5.1.2", M.HEADER, "Host unknown (Name server"),
    # Lotus Domino: the user is "not listed" in its directory (not a block list)
    "domino_not_listed_in_directory.eml": (K.HARD, R, "5.0.0", M.HEADER, "not listed in Domino Directory"),
    "domino_delivery_failure_text_only.eml": (K.HARD, R, "", M.MESSAGE_ID, "not listed in public Name & Address"),
    # found by their subjects alone: Russian Exchange's "Недоставляемое:", Sendmail's warning
    "exchange_russian_undeliverable_subject.eml": (K.HARD, R, "5.1.1", M.MESSAGE_ID, "RESOLVER.ADR.RecipNotFound"),
    "sendmail_warning_could_not_send.eml": (K.SOFT, R, "", M.HEADER, "Deferred: Connection refused"),
    # MDaemon quotes the remote reply in its session transcript ("<-- 550 ...")
    "mdaemon_permanent_failure.eml": (K.HARD, R, "5.1.1", M.HEADER, "User unknown in local recipient table"),
    "mdaemon_temporary_warning.eml": (K.SOFT, R, "4.7.1", M.HEADER, "Greylisting in action"),
    # Kerio Connect in Russian, the original's Message-ID folded onto its next line
    "kerio_connect_russian_user_unknown.eml": (K.HARD, R, "5.1.1", M.MESSAGE_ID, "User unknown"),
    # mailbox full: soft, whatever the class says
    "postfix_mailbox_full.eml": (K.SOFT, R, "5.2.2", M.HEADER, "Mailbox full"),
    "exim_mailbox_quota_exceeded.eml": (K.SOFT, R, "5.2.2", M.HEADER, "Mailbox quota exceeded"),
    "qmail_mailbox_full.eml": (K.SOFT, R, "5.2.2", M.HEADER, "Mailbox full"),
    "office365_mailbox_full.eml": (K.SOFT, R, "5.2.2", M.MESSAGE_ID, "QuotaExceededException"),
    "gmail_over_quota.eml": (K.SOFT, R, "5.2.2", M.HEADER, "over quota"),
    "yandex_mailbox_full.eml": (K.SOFT, R, "5.2.2", M.HEADER, "Mailbox size limit exceeded"),
    "mailru_mailbox_full_bare_code.eml": (K.SOFT, R, "550", M.HEADER, "Ящик получателя переполнен"),
    # a server that gave up retrying after days: "Action: failed" with a 4.x.x
    "postfix_gave_up_connection_timed_out.eml": (K.SOFT, R, "4.4.1", M.HEADER, "Connection timed out"),
    # Exim's words for the same, without a code: its hosts unreachable for the whole retry time
    "exim_retry_timeout_exceeded.eml": (K.SOFT, R, "", M.HEADER, "retry timeout exceeded"),
    # delays: "will retry"
    "greylisting_delayed.eml": (K.SOFT, R, "4.7.1", M.HEADER, "Greylisted"),
    "postfix_delayed_connection_timed_out.eml": (K.SOFT, R, "4.4.1", M.HEADER, "Connection timed out"),
    "exim_delay_warning.eml": (K.SOFT, R, "4.3.0", M.MESSAGE_ID, "451 4.3.0"),
    "sendmail_deferred_warning.eml": (K.SOFT, R, "4.4.7", M.HEADER, "Deferred: Connection timed out"),
    "gmail_delayed.eml": (K.SOFT, R, "4.4.1", M.HEADER, "did not accept our requests to connect"),
    "yandex_delayed.eml": (K.SOFT, R, "4.4.2", M.HEADER, "timeout exceeded"),
    # spam and policy refusals: the letter failed, the address is not to blame
    "postfix_client_blocked_spamhaus.eml": (K.REFUSED, R, "5.7.1", M.HEADER, "blocked using zen.spamhaus.org"),
    "exim_gmail_unsolicited_after_data.eml": (K.REFUSED, R, "5.7.1", M.HEADER, "likely unsolicited mail"),
    "gmail_dmarc_unauthenticated.eml": (K.REFUSED, R, "5.7.26", M.HEADER, "DMARC policy"),
    "outlook_com_ip_on_block_list.eml": (K.REFUSED, R, "5.7.1", M.HEADER, "block list (S3140)"),
    "mailru_spam_rejected_help_address.eml": (K.REFUSED, R, "550", M.HEADER, "550 spam message rejected"),
    "yahoo_tss_permanently_deferred.eml": (K.REFUSED, R, "5.7.2", M.HEADER, "permanently deferred"),
    # several recipients, each with its own outcome: ours is the delayed one, not the failed alias member
    "sendmail_alias_one_failed_one_deferred.eml": (K.SOFT, R, "4.2.2", M.HEADER, "Mailbox full"),
    # tied by the envelope token alone; tied by nothing Postroute chose
    "postfix_envelope_token_only.eml": (K.HARD, R, "5.1.1", M.TOKEN, "User unknown"),
    "minimal_dsn_no_original.eml": (K.HARD, R, "5.1.1", M.RECIPIENT, "User unknown"),
    # auto-replies (English, Russian, Vietnamese; by header or by subject) and a read receipt
    "out_of_office.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_outlook_automatic_reply.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_yandex_russian.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_russian_subject_only.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_vietnamese.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    # by the subject alone: Yandex's "Отпуск до 15 января", "Tôi đang đi vắng"
    "autoreply_yandex_vacation_subject_only.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_vietnamese_away_subject_only.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_x_autorespond_header.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "autoreply_precedence_header.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    "read_receipt.eml": (K.AUTO_REPLY, R, "", M.MESSAGE_ID, ""),
    # feedback loops (RFC 5965 ARF): the recipient marked the letter as spam; a DMARC
    # failure report (RFC 6591, ARF too) is no one's complaint
    "arf_mailru_fbl_abuse.eml": (K.COMPLAINT, R, "", M.HEADER, "abuse"),
    "arf_yandex_fbl_headers_only.eml": (K.COMPLAINT, R, "", M.HEADER, "abuse"),
    "arf_dmarc_auth_failure.eml": (None, None, "", M.NONE, ""),
    # unreadable; what people wrote
    "malformed.eml": (K.UNKNOWN, None, "", M.NONE, ""),
    "human_reply.eml": (None, None, "", M.NONE, ""),
    "human_reply_russian_outlook.eml": (None, None, "", M.NONE, ""),
    # a challenge-response system asking the sender to prove a person sent it: not a bounce
    "challenge_response_verification.eml": (None, None, "", M.NONE, ""),
}
# Soft reports of letters that came back, not delivered: the letter is
# bounced, the address kept. Every other soft one is a delay warning.
RETURNED = {
    "postfix_gave_up_connection_timed_out.eml",
    "exim_retry_timeout_exceeded.eml",
    "postfix_mailbox_full.eml",
    "exim_mailbox_quota_exceeded.eml",
    "qmail_mailbox_full.eml",
    "office365_mailbox_full.eml",
    "gmail_over_quota.eml",
    "yandex_mailbox_full.eml",
    "mailru_mailbox_full_bare_code.eml",
}
REPORTS = sorted(name for name, expected in EXPECTED.items() if expected[0] is not None)
LEFT_IN_INBOX = sorted(name for name, expected in EXPECTED.items() if expected[0] in (None, K.AUTO_REPLY))


def test_the_corpus_covers_every_file():
    assert {p.name for p in CORPUS.glob("*.eml")} == set(EXPECTED)
    assert len(REPORTS) >= 40


def test_the_parser_reads_the_whole_corpus_right(capsys):
    kinds = recipients = statuses = with_recipient = with_status = 0
    misses = []
    for name, (kind, recipient, status, _how, words) in sorted(EXPECTED.items()):
        parsed = parser.parse(render(name, recipient=R)).about(R)  # as it concerns our letter
        kinds += parsed.kind == kind
        if recipient is not None:
            with_recipient += 1
            recipients += parsed.recipients[:1] == [recipient]
        if kind is not None:
            with_status += 1
            statuses += parsed.status == status
        if (parsed.kind, parsed.status) != (kind, status if kind else parsed.status) or words not in parsed.diagnostic:
            misses.append(f"{name}: {parsed.kind} {parsed.status!r} {parsed.diagnostic[:80]!r}")
        elif recipient is not None and parsed.recipients[:1] != [recipient]:
            misses.append(f"{name}: recipients {parsed.recipients}")
    line = (
        f"bounce corpus: {len(EXPECTED)} reports, kind right {kinds}/{len(EXPECTED)}, "
        f"recipient right {recipients}/{with_recipient}, status right {statuses}/{with_status}"
    )
    with capsys.disabled():
        print(f"\n{line}")
    assert misses == [], line


@pytest.mark.parametrize("name", ["exchange_text_only_help_sentence.eml", "mailru_spam_rejected_help_address.eml"])
def test_a_help_address_or_our_own_is_never_the_recipient(name):
    parsed = parser.parse(render(name, recipient=R))
    assert parsed.recipients == [R]


def test_a_bare_reply_code_is_kept_and_no_status_is_invented():
    raw = render("qmail_user_unknown.eml", recipient=R).replace(b"550 5.1.1 <", b"450 <")
    parsed = parser.parse(raw)
    assert (parsed.kind, parsed.status) == (K.SOFT, "450")
    assert parsed.diagnostic.startswith("450 <jane.roe@example.org>")


@pytest.mark.django_db
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
    # Reports went to Postroute/Processed; human mail, auto-replies and the
    # read receipt stay in INBOX, unseen.
    inbox = folder_messages(dovecot_mailbox, "INBOX")
    assert len(inbox) == len(LEFT_IN_INBOX)
    assert all("\\Seen" not in flags for _, flags in inbox)
    moved = len(EXPECTED) - len(LEFT_IN_INBOX)
    assert len(folder_messages(dovecot_mailbox, "Postroute.Processed")) == moved
    mailbox.refresh_from_db()
    assert (mailbox.reports_found, mailbox.last_error, mailbox.health) == (moved, "", "ok")


def _assert_outcome(name, expected, letter, tenant) -> None:
    kind, _recipient, status, how, words = expected
    letter.refresh_from_db()
    reports = list(BounceReport.objects.filter(tenant=tenant, letter=letter))
    suppression = Suppression.objects.filter(tenant=tenant, email=letter.email).first()
    if kind is None:
        assert reports == [] and suppression is None and letter.status == Letter.Status.SENT, name
        return
    if how == M.NONE:  # unmatched: kept for the tenant, nothing changed
        assert reports == [] and suppression is None, name
        assert BounceReport.objects.filter(tenant=tenant, letter=None, kind=kind).count() == 1, name
        return
    [report] = reports
    assert (report.kind, report.matched_by, report.status) == (kind, how, status), name
    assert words in report.diagnostic and report.recipient == letter.email, name
    if how == M.RECIPIENT:  # unconfirmed: shown, never acted on
        assert letter.status == Letter.Status.SENT and suppression is None, name
    elif kind == K.HARD:
        assert letter.status == Letter.Status.BOUNCED and status in letter.last_reply, name
        assert suppression.reason == Suppression.Reason.HARD_BOUNCE, name
    elif kind == K.COMPLAINT:  # delivered, then marked as spam: the letter stays sent, the address goes
        assert letter.status == Letter.Status.SENT and suppression.reason == Suppression.Reason.COMPLAINT, name
    elif kind == K.REFUSED:
        assert letter.status == Letter.Status.BOUNCED and suppression is None, name
    elif name in RETURNED:  # soft, but the letter came back: bounced, the address kept
        assert report.returned and letter.status == Letter.Status.BOUNCED and suppression is None, name
        assert letter.last_reply.startswith("Soft bounce: ") and words in letter.last_reply, name
    else:  # a delay warning, an auto-reply: recorded, the letter still sent
        assert not report.returned and letter.status == Letter.Status.SENT and suppression is None, name
