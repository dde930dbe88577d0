"""A domain's DMARC policy (RFC 7489): the record at _dmarc.<domain>, else
at its organisational domain (found with the public suffix list bundled in
`publicsuffixlist`, no network), whose `sp` then applies to subdomains."""

import re
from dataclasses import dataclass
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from . import resolver

POLICIES = ("none", "quarantine", "reject")
# RFC 7489's grammar: the tag name "v" in any case (an ABNF string), the
# value DMARC1 exactly; tags and policy words are read in any case too.
VERSION = re.compile(r"[ \t]*[vV][ \t]*=[ \t]*DMARC1[ \t]*(;|$)")


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found
    policy: str  # none | quarantine | reject, the one that applies to the From domain
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    record: str = ""


@dataclass(frozen=True)
class Broken:
    """DMARC records that receivers apply none of."""

    name: str  # where they are (_dmarc.example.com)
    count: int  # how many: several, or one without a valid p=


def policy_for(domain: str) -> Policy | None:
    """Raises resolver.DnsFailure."""
    found, records = _discover(domain)
    if len(records) != 1:  # none, or several: receivers apply no policy
        return None
    return _policy(found, records[0], subdomain=found != domain)


def broken(domain: str) -> Broken | None:
    """The records found for domain when receivers can apply none of them
    (several, or no valid p=): publishing one more would not help. Raises
    resolver.DnsFailure."""
    found, records = _discover(domain)
    if len(records) > 1 or (records and _policy(found, records[0], subdomain=False) is None):
        return Broken(f"_dmarc.{found}", len(records))
    return None


def _discover(domain: str) -> tuple[str, list[str]]:
    """The DMARC records at domain, else at its organisational domain
    (RFC 7489 6.6.3: only when the domain has none, not when its own are
    several or invalid), with where they were found."""
    records = _records(domain)
    org = organisational_domain(domain)
    if not records and org != domain:
        return org, _records(org)
    return domain, records


def aligned(identity: str, from_domain: str, mode: str) -> bool:
    if mode == "s":
        return identity == from_domain
    return organisational_domain(identity) == organisational_domain(from_domain)


def organisational_domain(domain: str) -> str:
    return _psl().privatesuffix(domain) or domain


def is_public_suffix(domain: str) -> bool:
    """Names under it belong to different owners (com.vn, co.uk, msk.ru,
    github.io): no one organisation's domain."""
    return _psl().is_public(domain)


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def _records(domain: str) -> list[str]:
    return [r for r in resolver.lookup(f"_dmarc.{domain}", "TXT") if VERSION.match(r)]


def _policy(domain: str, record: str, *, subdomain: bool) -> Policy | None:
    tags = _tags(record)
    policy = tags.get("p", "")
    if policy not in POLICIES:
        return None
    if subdomain and tags.get("sp") in POLICIES:
        policy = tags["sp"]
    pct = tags.get("pct", "100")
    return Policy(
        domain=domain,
        policy=policy,
        adkim="s" if tags.get("adkim") == "s" else "r",
        aspf="s" if tags.get("aspf") == "s" else "r",
        pct=int(pct) if pct.isascii() and pct.isdigit() and len(pct) <= 3 else 100,  # "²".isdigit(): int() refuses it
        record=record,
    )


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip().lower()
    return tags
