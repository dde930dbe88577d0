"""Whether a domain publishes a DKIM key under a selector the server's
provider signs with (google, mail, selector1, ...): the sign that letters
from that domain through that server carry a signature of their own
domain, which DMARC counts as aligned."""

from . import resolver


def key_selector(domain: str, selectors: tuple[str, ...]) -> str | None:
    """The first selector with a key (a non-empty p=) at domain. Raises
    resolver.DnsFailure."""
    for selector in selectors:
        for record in resolver.lookup(f"{selector}._domainkey.{domain}", "TXT"):
            # RFC 6376 3.2: spaces may stand around "=" ("p = MIGf...")
            tags = {key.strip(): value.strip() for key, _, value in (part.partition("=") for part in record.split(";"))}
            if tags.get("p"):
                return selector
    return None
