"""SPF as a receiver evaluates it (RFC 7208, with pyspf: include, a, mx,
ip4/ip6, redirect, the limit of 10 lookups and of 2 void lookups, loops),
for the sending host of a server.

pyspf looks names up through its module-level `DNSLookup`, its documented
hook; ours answers from `resolver` (deadline, cache, DNS_RESOLVER). A
provider's sending machines are many, so its include name is evaluated as
a stand-in record that authorises one documentation address (TEST-NET-1),
and that address is checked: the result says whether the domain's record
reaches the provider's include, however deeply nested. The stand-in is the
provider's own record with that address added at its end, so that the
include costs the DNS lookups it costs receivers (_spf.google.com: 4, not 1)
against the limit of 10."""

import re
from contextvars import ContextVar
from dataclasses import dataclass

import spf as pyspf

from . import resolver
from .hosts import SendingHost

STAND_IN_IP = "192.0.2.1"
STAND_IN = f"v=spf1 ip4:{STAND_IN_IP} -all"
NOBODY = ("192.0.2.2",)  # an address no record authorises: its evaluation goes to the end
_stand_ins: ContextVar[frozenset[str]] = ContextVar("spf_stand_ins", default=frozenset())
# The DNS failure behind pyspf's temperror, which keeps only its words.
_failure: ContextVar[resolver.DnsFailure | None] = ContextVar("spf_failure", default=None)
# What a permerror is about, from pyspf's (English) words: the verdict says
# it in the user's language. Anything else is a term receivers cannot read.
ERRORS = (
    (re.compile("Two or more"), "several"),
    (re.compile("No valid SPF record|redirect domain has no"), "no_record"),
    (re.compile("lookup|MX records|CNAME chain", re.IGNORECASE), "lookups"),
    (re.compile("Non-ascii"), "ascii"),
)
MODIFIER = re.compile(r"[a-z][a-z0-9_.-]*=", re.IGNORECASE)


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    record: str | None  # the domain's own SPF record, as published; "" when it publishes several
    explanation: str = ""
    missing: tuple[str, ...] = ()  # the sending addresses it does not authorise
    error: str = ""  # what a permerror is about: several, no_record, lookups, ascii, syntax
    term: str = ""  # the term it is about (include:gone.example), when pyspf names one
    records: tuple[str, ...] = ()  # every SPF record the domain publishes

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def evaluate(domain: str, host: SendingHost) -> SpfResult:
    """Raises resolver.DnsFailure when DNS fails (pyspf's temperror)."""
    records = own_records(domain)
    if not records:
        return SpfResult("none", None)
    outcomes = _outcomes(domain, host)
    worst = next((o for o in outcomes if o.result != "pass"), outcomes[0])
    missing = () if host.includes else tuple(o.ip for o in outcomes if o.result != "pass")
    record = records[0] if len(records) == 1 else ""
    return SpfResult(worst.result, record, worst.explanation, missing, worst.error, worst.term, tuple(records))


def repaired(domain: str, host: SendingHost, record: str | None, mechanism: str) -> tuple[str | None, str]:
    """The record to publish at domain so that the host passes, each try
    evaluated as receivers would evaluate it were it published: `record`
    itself, then with `mechanism` before its `all`, then at its start. None
    when no try passes, with the error of the last (lookups: adding an
    include would pass the limit of 10). A try must also stay within the
    limits for an address it does not authorise, evaluated to the end:
    otherwise the domain's other senders, after the addition, would fail.
    Raises resolver.DnsFailure."""
    tries = [record, with_mechanism(record, mechanism)] if record else [with_mechanism(record, mechanism)]
    if record:
        terms = record.split()
        tries.append(" ".join([terms[0], mechanism, *terms[1:]]))
    error = ""
    for candidate in tries:
        outcomes = _outcomes(domain, host, candidate)
        failed = next((o for o in outcomes if o.result != "pass"), None)
        if failed is None:
            failed = next((o for o in _outcomes(domain, host, candidate, NOBODY) if o.result == "permerror"), None)
        if failed is None:
            return candidate, ""
        error = failed.error
    return None, error


def own_records(domain: str) -> list[str]:
    return [r for r in resolver.lookup(domain, "TXT") if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


def merged(records: tuple[str, ...]) -> str:
    """One record for several: every mechanism of each, once, then the
    first `all` (or `redirect=`) found."""
    terms: list[str] = []
    endings: list[str] = []
    for record in records:
        for term in record.split()[1:]:
            if term.lower().lstrip("+-~?") == "all" or term.lower().startswith("redirect="):
                endings.append(term)
            elif not MODIFIER.match(term) and term.lower() not in (t.lower() for t in terms):
                terms.append(term)
    ending = next((t for t in endings if not t.lower().startswith("redirect=")), endings[0] if endings else "")
    return " ".join(["v=spf1", *terms, *([ending] if ending else [])])


def without(record: str, term: str) -> str:
    """The record without `term` (a dead include)."""
    return " ".join(t for t in record.split() if t.lower() != term.lower())


def with_mechanism(record: str | None, mechanism: str) -> str:
    """The record with `mechanism` added before its `all` (terms after it
    are never reached), else before its `redirect=`, or a new record ending
    in ~all. Modifiers such as exp= may stand anywhere, after `all` too."""
    if not record:
        return f"v=spf1 {mechanism} ~all"
    terms = record.split()
    bare = [term.lower().lstrip("+-~?") for term in terms]
    at = next((n for n, term in enumerate(bare) if term == "all"), None)
    if at is None:
        at = next((n for n, term in enumerate(bare) if term.startswith("redirect=")), len(terms))
    return " ".join([*terms[:at], mechanism, *terms[at:]])


@dataclass(frozen=True)
class _Outcome:
    ip: str
    result: str
    explanation: str
    error: str = ""
    term: str = ""


def _outcomes(
    domain: str, host: SendingHost, record: str | None = None, ips: tuple[str, ...] | None = None
) -> list[_Outcome]:
    """The result for each sending address, or for the stand-in address
    of a provider's include (or for `ips`)."""
    token = _stand_ins.set(frozenset(host.includes))
    try:
        return [_check(ip, domain, record) for ip in ips or ((STAND_IN_IP,) if host.includes else host.ips)]
    finally:
        _stand_ins.reset(token)


def _check(ip: str, domain: str, record: str | None = None) -> _Outcome:
    query = pyspf.query(i=ip, s=f"postmaster@{domain}", h=domain, strict=True, querytime=0)
    token = _failure.set(None)
    try:
        result, _code, explanation = query.check(spf=record)
        failure = _failure.get()
    finally:
        _failure.reset(token)
    if result == "temperror":
        raise failure or resolver.DnsFailure(domain)
    if result != "permerror":
        return _Outcome(ip, result, explanation)
    problem = str(getattr(query, "prob", ""))
    error = next((error for pattern, error in ERRORS if pattern.search(problem)), "syntax")
    term = str(query.mech[-1]) if query.mech and error in ("no_record", "syntax") else ""
    if problem.startswith("redirect"):
        term = f"redirect={term}"
    return _Outcome(ip, result, explanation, error, term)


def _stand_in(name: str) -> str:
    """The provider's record at `name`, reaching the stand-in address after
    all its own terms (a redirect= followed as an include, as it costs the
    same), or the bare stand-in when it publishes none. Raises
    resolver.DnsFailure."""
    records = own_records(name)
    if len(records) != 1:
        return STAND_IN
    terms = []
    for term in records[0].split()[1:]:
        bare = term.lower().lstrip("+-~?")
        if bare == "all" or (MODIFIER.match(bare) and not bare.startswith("redirect=")):
            continue
        terms.append(f"include:{term.partition('=')[2]}" if bare.startswith("redirect=") else term)
    return " ".join(["v=spf1", *terms, f"ip4:{STAND_IN_IP}", "-all"])


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = 0) -> list:
    """pyspf's DNSLookup: ((name, type), value) pairs."""
    name = name.lower().rstrip(".")
    if qtype == "SPF":  # RFC 7208 retired the SPF type; nobody publishes it
        return []
    try:
        if qtype == "TXT" and name in _stand_ins.get():
            return [((name, qtype), [_stand_in(name).encode()])]
        values = resolver.lookup(name, qtype)
    except resolver.DnsFailure as exc:
        _failure.set(exc)
        raise pyspf.TempError(f"DNS {exc}") from exc
    if qtype == "TXT":
        return [((name, qtype), [value.encode()]) for value in values]
    if qtype == "MX":
        return [((name, qtype), (0, value)) for value in values]
    return [((name, qtype), value) for value in values]


pyspf.DNSLookup = _lookup
