"""Whether receivers will accept the letters a server sends from a given
From address (SPF, DMARC, DKIM), checked in DNS before a mailing starts.
Results never stop sending when DNS fails: they say "could not check"."""

from collections.abc import Iterable

from . import resolver
from .hosts import Server
from .verdict import Fix, Level, Verdict, check

__all__ = ["Fix", "Level", "Verdict", "check", "check_pairs", "enabled"]
enabled = resolver.enabled


def check_pairs(pairs: Iterable[tuple[Server, str, str]]) -> list[Verdict] | None:
    """A verdict for each (server, From address, envelope sender), all
    within one DNS deadline; None when checks are turned off
    (DNS_RESOLVER=off)."""
    if not resolver.enabled():
        return None
    with resolver.budget():
        return [check(server, from_address, envelope) for server, from_address, envelope in pairs]
