"""One (server, From) pair judged as a receiver would: SPF of the envelope
sender's domain for the server's sending host, DMARC of the From domain
and whether SPF or DKIM aligns with it, in one verdict with the reasons in
plain words and the exact records to publish."""

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import idna
from django.utils.translation import gettext as _

from .. import presets
from ..wire import idna_name
from . import dkim, dmarc, hosts, resolver, spf


class Level(StrEnum):
    PASS = "pass"
    SPAM = "spam"
    REJECT = "reject"
    UNKNOWN = "unknown"


logger = logging.getLogger(__name__)
BADGES = {Level.PASS: "success", Level.SPAM: "warning", Level.REJECT: "danger", Level.UNKNOWN: "muted"}


@dataclass(frozen=True)
class Fix:
    name: str  # where to publish (a TXT record)
    record: str


@dataclass(frozen=True)
class Verdict:
    level: Level
    from_domain: str
    reasons: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = ()
    facts: tuple[str, ...] = field(default=())  # SPF: pass · DMARC: p=reject · DKIM: google

    @property
    def label(self) -> str:
        return {
            Level.PASS: _("Passes SPF and DMARC"),
            Level.SPAM: _("Will likely go to spam"),
            Level.REJECT: _("Will be rejected"),
            Level.UNKNOWN: _("Could not check"),
        }[self.level]

    @property
    def badge(self) -> str:
        return BADGES[self.level]

    @property
    def rejected(self) -> bool:
        return self.level == Level.REJECT


def check(server: hosts.Server, from_address: str, envelope_address: str = "") -> Verdict:
    """Never raises for DNS trouble: that is "could not check", which
    never stops sending."""
    from_domain = _domain(from_address)
    envelope_domain = _domain(envelope_address) or from_domain
    try:
        with resolver.budget():
            return _judge(hosts.sending_host(server), from_domain, envelope_domain)
    except resolver.DnsFailure as failure:
        if failure.kind == resolver.ERROR:
            reason = _(
                "DNS answered the question about %(name)s with an error (SERVFAIL): the DNS of that domain is "
                "likely broken (an expired DNSSEC signature, name servers that do not serve it). Receivers meet the "
                "same error and hold letters back: ask whoever runs that domain's DNS to check it. This does not "
                "stop sending."
            ) % {"name": failure.name}
        else:
            reason = _("DNS did not answer in time. This does not stop sending; reload the page later to check again.")
        return Verdict(Level.UNKNOWN, from_domain, (reason,))
    except Exception:  # advice only: a record nobody foresaw must not break the page or the start
        logger.exception("Deliverability check of %s failed", from_domain)
        return Verdict(Level.UNKNOWN, from_domain, (_("The check failed. This does not stop sending."),))


def _judge(host: hosts.SendingHost, from_domain: str, envelope_domain: str) -> Verdict:
    own_envelope = envelope_domain in host.own_domains
    if host.unknown and not own_envelope:
        return Verdict(Level.UNKNOWN, from_domain, (host.unknown,))
    result = spf.SpfResult("pass", None) if own_envelope else spf.evaluate(envelope_domain, host)
    policy = dmarc.policy_for(from_domain)
    if from_domain in host.own_domains:  # a provider signs its own mailboxes
        selector: str | None = _("signed by %(provider)s") % {"provider": host.provider}
    else:
        selector = dkim.key_selector(from_domain, host.selectors)
    spf_aligned = result.passed and dmarc.aligned(envelope_domain, from_domain, policy.aspf if policy else "r")
    judged = _Judgement(host, from_domain, envelope_domain, result, policy, selector)
    if policy is None:
        judged.no_policy()
    elif spf_aligned or selector is not None:
        judged.level = Level.PASS
    else:
        judged.policy_bites()
    return judged.verdict()


@dataclass
class _Judgement:
    host: hosts.SendingHost
    from_domain: str
    envelope_domain: str
    spf: spf.SpfResult
    policy: dmarc.Policy | None
    selector: str | None
    level: Level = Level.PASS
    reasons: list[str] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    broken: dmarc.Broken | None = None  # DMARC records receivers apply none of

    def no_policy(self) -> None:
        if not self.spf.passed:
            self.level = Level.PASS if self.selector else Level.SPAM
            self._spf_reasons()
        if self.from_domain in self.host.own_domains:
            return  # the provider's own mailboxes: its policy is its business
        self.broken = dmarc.broken(self.from_domain)
        if self.broken is not None:
            values = {"name": self.broken.name, "count": self.broken.count}
            if self.broken.count > 1:
                reason = _(
                    "%(name)s holds %(count)s DMARC records: receivers apply none of them. Keep one and delete the "
                    "others."
                )
            else:
                reason = _(
                    "The DMARC record at %(name)s has no valid policy (p=none, p=quarantine or p=reject): receivers "
                    "apply none. Correct that record rather than publishing another."
                )
            self.reasons.append(reason % values)
            return
        org = dmarc.organisational_domain(self.from_domain)
        self.reasons.append(
            _("%(domain)s publishes no DMARC policy; Gmail and Yahoo ask senders of bulk mail for one.")
            % {"domain": self.from_domain}
        )
        self.fixes.append(Fix(f"_dmarc.{org}", "v=DMARC1; p=none"))

    def policy_bites(self) -> None:
        assert self.policy is not None
        words = {
            "reject": _("%(domain)s publishes DMARC p=reject: receivers refuse letters that fail it."),
            "quarantine": _("%(domain)s publishes DMARC p=quarantine: receivers put letters that fail it in spam."),
            "none": _(
                "%(domain)s publishes DMARC p=none, but its letters fail DMARC: Gmail and Yahoo expect bulk mail "
                "to pass it."
            ),
        }
        if self.policy.pct == 0 and self.policy.policy != "none":  # RFC 7489 6.6.4: the next milder policy
            words = {
                "reject": _(
                    "%(domain)s publishes DMARC p=reject with pct=0: receivers do not refuse letters that fail it, "
                    "they put them in spam."
                ),
                "quarantine": _(
                    "%(domain)s publishes DMARC p=quarantine with pct=0: receivers judge letters that fail it by "
                    "their own rules, and Gmail and Yahoo expect bulk mail to pass it."
                ),
            }
        refused = self.policy.policy == "reject" and self.policy.pct > 0
        self.level = Level.REJECT if refused else Level.SPAM
        self.reasons.append(words[self.policy.policy] % {"domain": self.from_domain})
        if not dmarc.aligned(self.envelope_domain, self.from_domain, self.policy.aspf):
            self.reasons.append(
                _(
                    "Letters carry %(from)s in From, but their envelope sender (where reports go) is on "
                    "%(envelope)s: SPF does not count for %(from)s. A bounce mailbox on %(from)s, or a DKIM "
                    "signature for it, makes DMARC pass."
                )
                % {"from": self.from_domain, "envelope": self.envelope_domain}
            )
        if not self.spf.passed:
            self._spf_reasons()
        self._dkim_reason()

    def _spf_reasons(self) -> None:
        domain, host = self.envelope_domain, self.host
        if presets.for_email(f"x@{domain}") is not None:
            self.reasons.append(
                _(
                    "Reports go to a mailbox on %(domain)s, a public provider whose SPF will never list "
                    "%(host)s: use a bounce mailbox on your own domain."
                )
                % {"domain": domain, "host": host.label}
            )
            return
        if self.spf.result == "permerror":
            self._spf_error()
            return
        if self.spf.record is None:
            reason = _("%(domain)s publishes no SPF record, so receivers cannot tell that %(host)s may send for it.")
        else:
            reason = _("The SPF record of %(domain)s does not authorise %(host)s: SPF %(result)s.")
        self.reasons.append(reason % {"domain": domain, "host": host.label, "result": self.spf.result})
        self._spf_fix(self.spf.record)

    def _spf_error(self) -> None:
        """A record receivers treat as an error (permerror), in words that
        say what is wrong and what to change, and the repaired record where
        it is the domain's own."""
        result, domain = self.spf, self.envelope_domain
        term, record = result.term, result.record or ""
        values = {"domain": domain, "term": term, "count": len(result.records)}
        if result.error == "several" and not record:
            self.reasons.append(
                _(
                    "%(domain)s publishes %(count)s SPF records; receivers accept only one and treat several as an "
                    "error. Publish the one record below in place of them all."
                )
                % values
            )
            self._spf_fix(spf.merged(result.records))
        elif result.error == "several":
            self.reasons.append(
                _(
                    "A domain that the SPF record of %(domain)s includes publishes several SPF records: receivers "
                    "treat that as an error. Remove that include, or ask its owner to merge them into one."
                )
                % values
            )
        elif result.error == "no_record" and term.lower() in record.lower().split():
            self.reasons.append(
                _(
                    "The SPF record of %(domain)s names %(term)s, whose domain publishes no SPF record: receivers "
                    "treat that as an error. Remove %(term)s."
                )
                % values
            )
            self._spf_fix(spf.without(record, term))
        elif result.error == "no_record":
            self.reasons.append(
                _(
                    "A record that the SPF record of %(domain)s includes names %(term)s, whose domain publishes no "
                    "SPF record: receivers treat that as an error. Remove the include that leads to it."
                )
                % values
            )
        elif result.error == "lookups":
            self.reasons.append(
                _(
                    "The SPF record of %(domain)s needs more DNS lookups than receivers allow: they treat it as an "
                    "error."
                )
                % values
            )
            self.reasons.append(
                _(
                    "An SPF record may cost at most 10 DNS lookups (include, a, mx, exists, redirect) and "
                    "2 that find nothing; an include that leads back to itself never ends. Remove the "
                    "includes you no longer use, or list addresses with ip4:/ip6:."
                )
            )
        elif result.error == "ascii":
            self.reasons.append(
                _(
                    "The SPF record of %(domain)s contains characters that are not plain Latin letters, digits or "
                    "punctuation (often quotes or dashes pasted from a word processor): receivers treat it as an "
                    "error. Type it again by hand."
                )
                % values
            )
        elif term:
            self.reasons.append(
                _(
                    "The SPF record of %(domain)s, or a record it includes, has a term receivers cannot read: "
                    "%(term)s. They treat the whole record as an error: correct or remove that term."
                )
                % values
            )
        else:
            self.reasons.append(
                _("The SPF record of %(domain)s, or a record it includes, is broken: receivers treat it as an error.")
                % values
            )

    def _spf_fix(self, record: str | None) -> None:
        """The record to publish, with the sending host added unless it
        already passes; checked first, so that no advice breaks the record."""
        mechanism = self.host.mechanisms(self.spf.missing or None)
        repaired, error = spf.repaired(self.envelope_domain, self.host, record, mechanism)
        if repaired is not None:
            self.fixes.append(Fix(self.envelope_domain, repaired))
            return
        values = {"domain": self.envelope_domain, "mechanism": mechanism}
        if error == "lookups":
            reason = _(
                "Adding %(mechanism)s to the SPF record of %(domain)s would make it need more DNS lookups than "
                "receivers allow. Remove the includes you no longer use, or list addresses with ip4:/ip6:, then "
                "add it."
            )
        else:
            reason = _(
                "Adding %(mechanism)s to the SPF record of %(domain)s would not make it pass: receivers would still "
                "find it broken."
            )
        self.reasons.append(reason % values)

    def _dkim_reason(self) -> None:
        if self.host.selectors:
            self.reasons.append(
                _(
                    "No DKIM key for %(domain)s under the selectors known for this server (%(selectors)s): "
                    "ask its administrator to sign letters of %(domain)s and publish the key."
                )
                % {"domain": self.from_domain, "selectors": ", ".join(self.host.selectors)}
            )

    def _dmarc_fact(self) -> str:
        if self.policy is not None:
            return f"p={self.policy.policy}" + (f"; pct={self.policy.pct}" if self.policy.pct != 100 else "")
        return _("not valid") if self.broken is not None else _("none published")

    def verdict(self) -> Verdict:
        if self.level == Level.PASS and not self.reasons:
            self.reasons.append(
                _("Receivers will find the letters authenticated for %(domain)s.") % {"domain": self.from_domain}
            )
        facts = [
            _("SPF of %(domain)s: %(result)s") % {"domain": self.envelope_domain, "result": self.spf.result},
            _("DMARC: %(policy)s") % {"policy": self._dmarc_fact()},
            _("DKIM: %(selector)s") % {"selector": self.selector or _("no key found")},
        ]
        return Verdict(self.level, self.from_domain, tuple(self.reasons), tuple(self.fixes), tuple(facts))


def _domain(address: str) -> str:
    """The domain as DNS names it (IDNA), for pyspf as for the lookups."""
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    try:
        return idna_name(domain)
    except idna.IDNAError:
        return domain
