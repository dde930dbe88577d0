"""DNS answers for the deliverability checks: one resolver (the system's,
or the one DNS_RESOLVER names), a deadline shared by every lookup made for
one page (`budget`), and answers kept in Django's cache for a few minutes,
so that a page never waits long and a reload asks nothing again.

A failure (timeout, no server answering) is kept for a short while too: a
page whose DNS is down must not wait again on every reload. A name the
page's deadline left unasked, or cut short, is not a failure: the next
page asks it."""

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import dns.exception
import dns.name
import dns.resolver
from django.conf import settings
from django.core.cache import cache

FAILED = "failed"  # no answer in time
ERROR = "error"  # an answer that is an error: SERVFAIL, or refused
_deadline: ContextVar[float | None] = ContextVar("dns_deadline", default=None)


class DnsFailure(Exception):
    """DNS did not answer in time (FAILED), or answered with an error
    (ERROR): the check could not be made."""

    def __init__(self, name: str, kind: str = FAILED) -> None:
        super().__init__(name)
        self.name, self.kind = name, kind


class OutOfTime(DnsFailure):
    """The page's deadline came before the name was asked, or cut its
    question short: nothing is known about the name, so nothing is kept."""


def enabled() -> bool:
    return settings.DNS_RESOLVER != "off"


@contextmanager
def budget(seconds: float | None = None) -> Iterator[None]:
    """Every lookup inside shares one deadline. An inner budget keeps the
    outer one: a page that checks many pairs waits at most once."""
    if _deadline.get() is not None:
        yield
        return
    token = _deadline.set(time.monotonic() + (seconds if seconds is not None else settings.DNS_TIMEOUT))
    try:
        yield
    finally:
        _deadline.reset(token)


def lookup(name: str, rdtype: str) -> list[str]:
    """The records of `name` as text: TXT strings joined, addresses, MX
    exchanges (without the trailing dot). Empty when the name or the record
    does not exist. Raises DnsFailure."""
    name = name.lower().rstrip(".")
    key = "dns:" + hashlib.sha256(f"{rdtype} {name}".encode()).hexdigest()
    cached = cache.get(key)
    if cached in (FAILED, ERROR):
        raise DnsFailure(name, cached)
    if cached is not None:
        return cached
    try:
        answers = _query(name, rdtype)
    except OutOfTime:
        raise
    except DnsFailure as failure:
        cache.set(key, failure.kind, settings.DNS_FAILURE_CACHE_SECONDS)
        raise
    cache.set(key, answers, settings.DNS_CACHE_SECONDS)
    return answers


def _query(name: str, rdtype: str) -> list[str]:
    remaining = _remaining()
    if remaining <= 0:
        raise OutOfTime(name)
    try:
        answer = _resolver(settings.DNS_RESOLVER).resolve(
            name, rdtype, lifetime=remaining, search=False, raise_on_no_answer=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN, dns.name.NameTooLong):
        return []
    except (dns.name.LabelTooLong, dns.name.EmptyLabel, dns.name.BadEscape):
        return []
    except dns.exception.Timeout as exc:
        if remaining < settings.DNS_TIMEOUT / 2:  # the page's deadline cut it short: no fair chance
            raise OutOfTime(name) from exc
        raise DnsFailure(name) from exc
    except dns.resolver.NoNameservers as exc:  # SERVFAIL (or refused) from every server
        raise DnsFailure(name, ERROR) from exc
    except dns.exception.DNSException as exc:
        raise DnsFailure(name) from exc
    if answer.rrset is None:
        return []
    return [_text(rdata, rdtype) for rdata in answer.rrset]


def _text(rdata: object, rdtype: str) -> str:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    if rdtype == "MX":
        return rdata.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
    if rdtype == "PTR":
        return rdata.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
    return rdata.to_text()


def _remaining() -> float:
    deadline = _deadline.get()
    if deadline is None:
        return settings.DNS_TIMEOUT
    return deadline - time.monotonic()


@lru_cache(maxsize=4)
def _resolver(spec: str) -> dns.resolver.Resolver:
    """The system's resolver, or "host:port" (the tests' own DNS server)."""
    if not spec:
        return dns.resolver.Resolver()
    host, _, port = spec.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host.strip("[]")]
    resolver.port = int(port)
    return resolver
