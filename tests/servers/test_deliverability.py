"""The deliverability checks against a real DNS server on 127.0.0.1
(tests/servers/dns_server.py): SPF pass and fail, a nested include chain,
a loop, too many lookups, void lookups, DMARC reject/quarantine/none and
the organisational domain's sp, DKIM, no records at all, and a server that
never answers. Nothing reaches the internet."""

import time

import pytest

from servers.deliverability import Level, check, check_pairs, resolver
from servers.deliverability.spf import with_mechanism
from servers.models import SmtpServer
from tests.servers.dns_server import COMPANY_IP

COMPANY = SmtpServer(name="Own relay", kind="external", host="smtp.acme.test", sender_email="news@acme.test")
GMAIL = SmtpServer(name="Gmail", kind="external", host="smtp.gmail.com", sender_email="ann@gmail.com")


def test_a_relay_listed_in_the_spf_record_passes_and_says_so(dns_checks):
    verdict = check(COMPANY, "news@pass.test")
    assert verdict.level == Level.PASS and verdict.fixes == ()
    assert verdict.facts == ("SPF of pass.test: pass", "DMARC: p=reject", "DKIM: no key found")


def test_spf_fail_under_dmarc_reject_is_a_rejection_with_the_record_to_publish(dns_checks):
    verdict = check(COMPANY, "news@fail.test")
    assert verdict.level == Level.REJECT and verdict.rejected
    assert "fail.test publishes DMARC p=reject" in verdict.reasons[0]
    assert [(f.name, f.record) for f in verdict.fixes] == [
        ("fail.test", f"v=spf1 ip4:5.45.200.99 mx ip4:{COMPANY_IP} -all")
    ]


def test_a_provider_is_named_by_its_include_and_quarantine_means_spam(dns_checks):
    verdict = check(GMAIL, "news@quarantine.test")
    assert verdict.level == Level.SPAM and "p=quarantine" in verdict.reasons[0]
    assert verdict.fixes[0].record == "v=spf1 ip4:5.45.200.99 include:_spf.google.com ~all"


def test_dmarc_none_does_not_save_a_failing_spf_from_spam(dns_checks):
    assert check(COMPANY, "news@relaxed.test").level == Level.SPAM


@pytest.mark.parametrize("server", [COMPANY, GMAIL], ids=["by mx three levels down", "by include two levels down"])
def test_a_nested_include_chain_is_followed(dns_checks, server):
    assert check(server, "news@nested.test").level == Level.PASS


def test_redirect_is_followed_and_a_missing_dmarc_is_advised(dns_checks):
    verdict = check(COMPANY, "news@redirect.test")
    assert verdict.level == Level.PASS
    assert [(f.name, f.record) for f in verdict.fixes] == [("_dmarc.redirect.test", "v=DMARC1; p=none")]
    gmail = check(GMAIL, "news@redirect.test")
    assert gmail.fixes[0].record == "v=spf1 include:_spf.google.com redirect=pass.test"


@pytest.mark.parametrize(
    ("domain", "level"), [("loop.test", Level.REJECT), ("many.test", Level.SPAM), ("void.test", Level.SPAM)]
)
def test_a_broken_record_fails_as_receivers_fail_it(dns_checks, domain, level):
    """The loop and the 11 includes would pass if followed without the
    limit of 10 lookups (many.test lists the relay after them)."""
    verdict = check(COMPANY, f"news@{domain}")
    assert verdict.level == level
    assert f"The SPF record of {domain} needs more DNS lookups than receivers allow" in " ".join(verdict.reasons)
    assert "may cost at most 10 DNS lookups" in " ".join(verdict.reasons)


def test_a_providers_include_costs_the_lookups_it_costs_receivers(dns_checks):
    """_spf.google.com includes three more names: after 7 lookups of the
    domain's own it makes 11, and receivers answer permerror. It was
    counted as one lookup (the stand-in), and judged to pass."""
    verdict = check(GMAIL, "news@crowded.test")
    assert verdict.level == Level.REJECT and "SPF of crowded.test: permerror" in verdict.facts
    assert "needs more DNS lookups than receivers allow" in " ".join(verdict.reasons)
    yandex = SmtpServer(name="Yandex", kind="external", host="smtp.yandex.ru", sender_email="a@yandex.ru")
    assert check(yandex, "news@roomy.test").level == Level.PASS  # 8 + the redirect's 2: exactly 10


def test_the_record_to_publish_is_one_that_passes(dns_checks):
    """The advice was the record with the include added, unchecked: for a
    record of 7 lookups, include:_spf.google.com made 11, a permerror for
    every letter of the domain, not only this server's. And a term before
    the final all that refuses the address decides first."""
    full = check(GMAIL, "news@full.test")
    assert full.fixes == ()
    assert "Adding include:_spf.google.com to the SPF record of full.test would make it need more DNS lookups" in (
        " ".join(full.reasons)
    )
    denied = check(COMPANY, "news@denied.test")
    assert [f.record for f in denied.fixes] == [f"v=spf1 ip4:{COMPANY_IP} -ip4:5.45.200.0/24 ~all"]


@pytest.mark.parametrize(
    ("server", "domain", "reason", "fix"),
    [
        (
            GMAIL,
            "twice.test",
            "twice.test publishes 2 SPF records; receivers accept only one",
            "v=spf1 ip4:5.45.200.99 include:_spf.google.com -all",
        ),
        (
            COMPANY,
            "twice.test",
            "twice.test publishes 2 SPF records; receivers accept only one",
            f"v=spf1 ip4:5.45.200.99 include:_spf.google.com ip4:{COMPANY_IP} -all",
        ),
        (
            COMPANY,
            "deadinclude.test",
            "names include:gone.test, whose domain publishes no SPF record: receivers treat that as an error. "
            "Remove include:gone.test.",
            f"v=spf1 ip4:{COMPANY_IP} -all",
        ),
        (GMAIL, "typo.test", "has a term receivers cannot read: inclde:_spf.google.com.", None),
        (COMPANY, "pasted.test", "often quotes or dashes pasted from a word processor", None),
    ],
    ids=["two records, merged", "two records, merged and the host added", "a dead include", "a typo", "a dash"],
)
def test_a_broken_record_says_in_words_what_to_change(dns_checks, server, domain, reason, fix):
    """pyspf's own English (SPF Permanent Error: Two or more type TXT spf
    records found.) was shown in the middle of a Russian sentence, with no
    record to publish: the tenant was told the record was broken, not what
    to do. Now each kind of error has its words, and where the domain's own
    record is at fault the repaired record is given, checked to pass."""
    verdict = check(server, f"news@{domain}")
    assert verdict.level == Level.REJECT
    assert reason in " ".join(verdict.reasons) and "Permanent Error" not in " ".join(verdict.reasons)
    assert [f.record for f in verdict.fixes] == ([fix] if fix else [])


def test_no_records_at_all_asks_for_both(dns_checks):
    verdict = check(GMAIL, "news@norecords.test")
    assert verdict.level == Level.SPAM
    assert [(f.name, f.record) for f in verdict.fixes] == [
        ("norecords.test", "v=spf1 include:_spf.google.com ~all"),
        ("_dmarc.norecords.test", "v=DMARC1; p=none"),
    ]


def test_a_dkim_key_for_the_from_domain_passes_dmarc_without_spf(dns_checks):
    verdict = check(COMPANY, "news@signed.test")
    assert verdict.level == Level.PASS and "DKIM: default" in verdict.facts
    assert check(GMAIL, "news@signed.test").level == Level.REJECT  # Google signs under "google"


@pytest.mark.parametrize(
    ("domain", "level", "fact"),
    [
        ("spaced.test", Level.PASS, "DKIM: mail"),  # "p = MIGf...": RFC 6376 allows spaces around "="
        ("split.test", Level.PASS, "DKIM: default"),  # ed25519, t=y, the key in two strings
        ("revoked.test", Level.REJECT, "DKIM: no key found"),  # p= empty: the key is revoked
    ],
)
def test_dkim_keys_as_domains_publish_them(dns_checks, domain, level, fact):
    verdict = check(COMPANY, f"news@{domain}")
    assert verdict.level == level and fact in verdict.facts


def test_records_behind_cname_chains_are_read(dns_checks):
    """A hosting company's records reached by CNAME: the SPF include (two
    links), the DMARC record and the DKIM key (as Microsoft 365 and
    SendGrid publish selectors)."""
    verdict = check(COMPANY, "news@office.test")
    assert verdict.level == Level.PASS
    assert verdict.facts == ("SPF of office.test: pass", "DMARC: p=reject", "DKIM: mail")


def test_a_subdomain_takes_the_organisational_domains_sp(dns_checks):
    verdict = check(COMPANY, "news@news.orgpolicy.test")
    assert verdict.level == Level.REJECT and "DMARC: p=reject" in verdict.facts


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("news@dmarctwice.test", "_dmarc.dmarctwice.test holds 2 DMARC records: receivers apply none of them."),
        ("news@misspelt.test", "The DMARC record at _dmarc.misspelt.test has no valid policy"),
        ("news@news.orgtwice.test", "_dmarc.orgtwice.test holds 2 DMARC records"),
    ],
    ids=["two records", "a misspelt p", "two at the organisational domain"],
)
def test_dmarc_records_receivers_cannot_apply_are_named_not_added_to(dns_checks, address, reason):
    """A domain with two DMARC records (or one with p=rejected) was told it
    "publishes no DMARC policy" and to publish v=DMARC1; p=none at the very
    name that holds them: one more record, still none applied."""
    verdict = check(COMPANY, address)
    assert verdict.level == Level.PASS and reason in " ".join(verdict.reasons)
    assert verdict.fixes == () and "DMARC: not valid" in verdict.facts


def test_a_subdomains_own_broken_dmarc_record_is_not_replaced_by_the_organisational_one(dns_checks):
    """RFC 7489 6.6.3: the organisational domain is asked only when the
    domain has no DMARC record at all; its sp=reject does not apply here."""
    verdict = check(COMPANY, "news@broken.orgpolicy.test")
    assert verdict.level == Level.SPAM and "_dmarc.broken.orgpolicy.test has no valid policy" in verdict.reasons[-1]


def test_an_envelope_sender_on_another_domain_does_not_align(dns_checks):
    """With substitution the reports go to the bounce mailbox: SPF passes
    for its domain, not for the From's."""
    verdict = check(COMPANY, "news@pass.test", "bounces@nested.test")
    assert verdict.level == Level.REJECT
    assert "envelope sender (where reports go) is on nested.test" in " ".join(verdict.reasons)
    public = check(COMPANY, "news@pass.test", "bounces@yandex.ru")
    assert "a public provider whose SPF will never list" in " ".join(public.reasons)
    relaxed = check(COMPANY, "news@relaxed.test", "bounces@pass.test")  # p=none: still not what Gmail wants
    assert relaxed.level == Level.SPAM and "Gmail and Yahoo expect bulk mail to pass it" in relaxed.reasons[0]


def test_an_internationalised_domain_is_looked_up_by_its_ascii_name(dns_checks):
    verdict = check(COMPANY, "news@пример.test")
    assert verdict.level == Level.PASS and verdict.from_domain == "xn--e1afmkfd.test"


def test_a_providers_own_mailbox_passes_without_records_of_ours(dns_checks):
    verdict = check(GMAIL, "ann@gmail.com")
    assert verdict.level == Level.PASS and verdict.fixes == ()
    assert verdict.facts == ("SPF of gmail.com: pass", "DMARC: none published", "DKIM: signed by Google")


def test_the_platform_server_is_named_by_the_operators_include(dns_checks, settings):
    platform = SmtpServer(name="Platform", kind="external", host="smtp.acme.test", sender_email="x@platform.test")
    assert check(platform, "news@platform.test").level == Level.SPAM  # its address is not listed
    settings.PLATFORM_SPF_INCLUDE = "spf.postroute.test"
    assert check(platform, "news@platform.test").level == Level.PASS


@pytest.mark.parametrize(
    ("server", "why"),
    [
        (SmtpServer(kind="internal", sender_email="a@pass.test"), "this machine's own mail server"),
        (SmtpServer(kind="external", host="smtp.private.test", sender_email="a@pass.test"), "only private addresses"),
        (SmtpServer(kind="external", host="smtp.nowhere.test", sender_email="a@pass.test"), "has no address in DNS"),
    ],
)
def test_an_unknown_sending_host_is_not_guessed(dns_checks, server, why):
    verdict = check(server, "news@pass.test")
    assert verdict.level == Level.UNKNOWN and why in verdict.reasons[0]


def test_a_silent_dns_server_costs_one_short_wait_per_page_and_is_remembered(dns_checks, settings):
    settings.DNS_TIMEOUT = 0.4
    started = time.monotonic()
    verdicts = check_pairs([(COMPANY, "news@a.timeout.test", ""), (GMAIL, "news@b.timeout.test", "")])
    assert 0.3 < time.monotonic() - started < 1.0  # one deadline for the page, not one per lookup
    assert [v.level for v in verdicts] == [Level.UNKNOWN, Level.UNKNOWN]
    assert "does not stop sending" in verdicts[0].reasons[0]
    started = time.monotonic()
    assert check(COMPANY, "news@a.timeout.test").level == Level.UNKNOWN
    assert time.monotonic() - started < 0.1  # the failure is kept for a while


@pytest.mark.parametrize(
    ("address", "name"),
    [("news@a.servfail.test", "a.servfail.test"), ("news@dnssec.test", "_spf.servfail.test")],
    ids=["the domain", "an include"],
)
def test_servfail_is_named_as_the_domains_broken_dns_not_a_slow_answer(dns_checks, address, name):
    """A SERVFAIL (a broken DNSSEC signature, a lame delegation) comes back
    at once, every time: "did not answer in time; reload later" sent the
    tenant to wait for something that never changes by waiting."""
    for _ in range(2):  # the second from the cache
        started = time.monotonic()
        verdict = check(COMPANY, address)
        assert verdict.level == Level.UNKNOWN and time.monotonic() - started < 0.5
        assert f"DNS answered the question about {name} with an error (SERVFAIL)" in verdict.reasons[0]


def test_names_the_pages_deadline_left_unasked_are_asked_on_the_next_page(dns_checks, settings):
    """A silent name used the whole budget; the second pair's names were
    never asked, yet were kept as failures for a minute: "reload the page
    later" gave "Could not check" again, on a DNS that answers."""
    settings.DNS_TIMEOUT = 0.4
    verdicts = check_pairs([(COMPANY, "news@a.timeout.test", ""), (COMPANY, "news@pass.test", "")])
    assert [v.level for v in verdicts] == [Level.UNKNOWN, Level.UNKNOWN]
    assert check(COMPANY, "news@pass.test").level == Level.PASS


def test_a_question_the_deadline_cut_short_is_not_kept_as_a_failure(dns_checks, settings):
    """The SPF lookup of x.slow.test takes most of the budget; the DMARC
    one after it times out on what is left, which says nothing about it."""
    settings.DNS_TIMEOUT = 0.5
    assert check(COMPANY, "news@x.slow.test").level == Level.UNKNOWN
    with resolver.budget():
        assert resolver.lookup("_dmarc.x.slow.test", "TXT") == []


def test_answers_are_cached_so_a_reload_asks_nothing(dns_checks):
    check(COMPANY, "news@nested.test")
    asked = dns_checks.resolver.queries
    assert check(COMPANY, "news@nested.test").level == Level.PASS
    assert dns_checks.resolver.queries == asked


def test_checks_are_off_when_asked(settings):
    settings.DNS_RESOLVER = "off"
    assert check_pairs([(COMPANY, "news@pass.test", "")]) is None


def test_a_record_too_long_for_udp_is_read_over_tcp(dns_checks):
    """big.test's TXT answer is truncated over UDP; the record is last."""
    assert check(COMPANY, "news@big.test").level == Level.PASS


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "v=spf1 ip4:1.2.3.4 ~all"),
        ("v=spf1 mx -all", "v=spf1 mx ip4:1.2.3.4 -all"),
        ("v=spf1 mx", "v=spf1 mx ip4:1.2.3.4"),
        ("v=spf1 redirect=_spf.x.test", "v=spf1 ip4:1.2.3.4 redirect=_spf.x.test"),
        # exp= may follow the all: after it, the address would never be reached
        ("v=spf1 mx -all exp=why.x.test", "v=spf1 mx ip4:1.2.3.4 -all exp=why.x.test"),
        ("v=spf1 redirect=_spf.x.test exp=why.x.test", "v=spf1 ip4:1.2.3.4 redirect=_spf.x.test exp=why.x.test"),
        ("v=spf1 mx ~all include:late.x.test", "v=spf1 mx ip4:1.2.3.4 ~all include:late.x.test"),
    ],
)
def test_the_mechanism_goes_before_the_final_all_or_redirect(record, expected):
    assert with_mechanism(record, "ip4:1.2.3.4") == expected


def test_a_dmarc_record_in_capitals_is_applied(dns_checks):
    """RFC 7489's grammar reads the tag names and the policy in any case
    (only DMARC1 is exact): V=DMARC1; P=Reject was taken for no record,
    judged spam instead of rejected, and a second record was advised."""
    verdict = check(COMPANY, "news@shouting.test")
    assert verdict.level == Level.REJECT and "DMARC: p=reject" in verdict.facts


def test_p_reject_with_pct_0_sends_to_spam_and_does_not_ask_to_send_anyway(dns_checks):
    """pct=0 is the first step of rolling out p=reject: receivers apply
    quarantine instead (RFC 7489 6.6.4). It was judged "Will be rejected",
    and a start asked for "Send anyway" for letters no one refuses."""
    verdict = check(COMPANY, "news@rollout.test")
    assert verdict.level == Level.SPAM and not verdict.rejected
    assert "p=reject with pct=0: receivers do not refuse letters that fail it" in verdict.reasons[0]
    assert "DMARC: p=reject; pct=0" in verdict.facts
    assert check(COMPANY, "news@halfway.test").level == Level.REJECT  # half of them are refused


def test_a_dmarc_pct_of_digits_int_refuses_is_left_out_and_the_policy_holds(dns_checks):
    """pct=² passed str.isdigit() and int() refused it: the check failed
    as a whole ("unknown", an error logged at every look), so a p=reject
    domain was not named and a start needed no "Send anyway". A pct that is
    no number is left out, as RFC 7489 says: the policy applies in full."""
    verdict = check(COMPANY, "news@superscript.test")
    assert verdict.level == Level.REJECT
