"""SPF as a receiver evaluates it (RFC 7208, with pyspf: include, a, mx,
ip4/ip6, redirect, the limit of 10 lookups and of 2 void lookups, loops),
for the sending host of a server.

pyspf looks names up through its module-level `DNSLookup`, its documented
hook; ours answers from `resolver` (deadline, cache, DNS_RESOLVER). A
provider's sending machines are many, so its include name is evaluated as
a stand-in record that authorises one documentation address (TEST-NET-1),
and that address is checked: the result says whether the domain's record
reaches the provider's include, however deeply nested."""

from contextvars import ContextVar
from dataclasses import dataclass

import spf as pyspf

from . import resolver
from .hosts import SendingHost

STAND_IN_IP = "192.0.2.1"
STAND_IN = f"v=spf1 ip4:{STAND_IN_IP} -all"
_stand_ins: ContextVar[frozenset[str]] = ContextVar("spf_stand_ins", default=frozenset())


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    record: str | None  # the domain's own SPF record, as published
    explanation: str = ""
    missing: tuple[str, ...] = ()  # the sending addresses it does not authorise

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def evaluate(domain: str, host: SendingHost) -> SpfResult:
    """Raises resolver.DnsFailure when DNS fails (pyspf's temperror)."""
    record = own_record(domain)
    if record is None:
        return SpfResult("none", None)
    if host.includes:
        token = _stand_ins.set(frozenset(host.includes))
        try:
            result, explanation = _check(STAND_IN_IP, domain)
        finally:
            _stand_ins.reset(token)
        return SpfResult(result, record, explanation)
    results = [(ip, *_check(ip, domain)) for ip in host.ips]
    worst = next((r for r in results if r[1] != "pass"), results[0])
    missing = tuple(ip for ip, result, _ in results if result != "pass")
    return SpfResult(worst[1], record, worst[2], missing)


def own_record(domain: str) -> str | None:
    records = [r for r in resolver.lookup(domain, "TXT") if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    return records[0] if len(records) == 1 else ("" if records else None)


def with_mechanism(record: str | None, mechanism: str) -> str:
    """The record with `mechanism` added before its final `all` or
    `redirect=`, or a new record ending in ~all."""
    if not record:
        return f"v=spf1 {mechanism} ~all"
    terms = record.split()
    last = terms[-1].lower().lstrip("+-~?")
    at = len(terms) - 1 if last == "all" or last.startswith("redirect=") else len(terms)
    return " ".join([*terms[:at], mechanism, *terms[at:]])


def _check(ip: str, domain: str) -> tuple[str, str]:
    query = pyspf.query(i=ip, s=f"postmaster@{domain}", h=domain, strict=True, querytime=0)
    result, _code, explanation = query.check()
    if result == "temperror":
        raise resolver.DnsFailure(explanation)
    return result, explanation


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = 0) -> list:
    """pyspf's DNSLookup: ((name, type), value) pairs."""
    name = name.lower().rstrip(".")
    if qtype == "SPF":  # RFC 7208 retired the SPF type; nobody publishes it
        return []
    if qtype == "TXT" and name in _stand_ins.get():
        return [((name, qtype), [STAND_IN.encode()])]
    try:
        values = resolver.lookup(name, qtype)
    except resolver.DnsFailure as exc:
        raise pyspf.TempError(f"DNS {exc}") from exc
    if qtype == "TXT":
        return [((name, qtype), [value.encode()]) for value in values]
    if qtype == "MX":
        return [((name, qtype), (0, value)) for value in values]
    return [((name, qtype), value) for value in values]


pyspf.DNSLookup = _lookup
