"""A real authoritative DNS server for the deliverability tests: dnslib's
DNSServer on 127.0.0.1 (UDP and TCP on one port) answering from the zone
below; UDP answers over 512 bytes come truncated, as from a real server.
CNAMEs are followed as a recursive resolver follows them. Names under
timeout.test get no answer at all; under slow.test, one after
SLOW seconds; under servfail.test, SERVFAIL. Nothing leaves the machine."""

import threading
import time
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

COMPANY_IP = "5.45.200.10"  # smtp.acme.test, a company's own relay
OTHER_IP = "5.45.200.99"
DKIM_KEY = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"
GOOGLE = "include:_netblocks.google.com include:_netblocks2.google.com include:_netblocks3.google.com"
CROWDED = " ".join(f"include:t{n}.m.test" for n in range(1, 8))  # 7 lookups, and Google's 4 make 11
ROOMY = " ".join(f"include:t{n}.m.test" for n in range(1, 9))  # 8, and Yandex's 2 make 10
SLOW = 0.3  # seconds names under slow.test take to answer
TOO_MANY = " ".join(f"include:t{n}.m.test" for n in range(1, 12))

ZONE = f"""
smtp.acme.test.        60 IN A    {COMPANY_IP}
smtp.private.test.     60 IN A    10.0.0.5
pass.test.             60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
pass.test.             60 IN TXT  "google-site-verification=abc"
_dmarc.pass.test.      60 IN TXT  "v=DMARC1; p=reject; rua=mailto:d@pass.test"
fail.test.             60 IN TXT  "v=spf1 ip4:{OTHER_IP} mx -all"
_dmarc.fail.test.      60 IN TXT  "v=DMARC1; p=reject"
quarantine.test.       60 IN TXT  "v=spf1 ip4:{OTHER_IP} ~all"
_dmarc.quarantine.test. 60 IN TXT "v=DMARC1; p=quarantine; pct=100"
superscript.test.      60 IN TXT  "v=spf1 ip4:{OTHER_IP} -all"
_dmarc.superscript.test. 60 IN TXT "v=DMARC1; p=reject; pct=²"
relaxed.test.          60 IN TXT  "v=spf1 -all"
_dmarc.relaxed.test.   60 IN TXT  "v=DMARC1; p=none"
nested.test.           60 IN TXT  "v=spf1 include:one.nested.test -all"
one.nested.test.       60 IN TXT  "v=spf1 ip4:{OTHER_IP} include:two.nested.test ?all"
two.nested.test.       60 IN TXT  "v=spf1 mx:nested.test include:_spf.google.com -all"
nested.test.           60 IN MX   10 mail.nested.test.
mail.nested.test.      60 IN A    {COMPANY_IP}
_dmarc.nested.test.    60 IN TXT  "v=DMARC1; p=reject"
redirect.test.         60 IN TXT  "v=spf1 redirect=pass.test"
loop.test.             60 IN TXT  "v=spf1 include:loop2.test -all"
loop2.test.            60 IN TXT  "v=spf1 include:loop.test -all"
_dmarc.loop.test.      60 IN TXT  "v=DMARC1; p=reject"
many.test.             60 IN TXT  "v=spf1 {TOO_MANY} ip4:{COMPANY_IP} -all"
void.test.             60 IN TXT  "v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test ip4:{COMPANY_IP} -all"
signed.test.           60 IN TXT  "v=spf1 -all"
dnssec.test.           60 IN TXT  "v=spf1 include:_spf.servfail.test -all"
_dmarc.signed.test.    60 IN TXT  "v=DMARC1; p=reject"
default._domainkey.signed.test. 60 IN TXT "{DKIM_KEY}"
office.test.           60 IN TXT  "v=spf1 include:_spf.office.test -all"
_spf.office.test.      60 IN CNAME _spf.hosting.test.
_spf.hosting.test.     60 IN CNAME _spf2.hosting.test.
_spf2.hosting.test.    60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
_dmarc.office.test.    60 IN CNAME _dmarc.hosting.test.
_dmarc.hosting.test.   60 IN TXT  "v=DMARC1; p=reject"
mail._domainkey.office.test. 60 IN CNAME mail-office-test._domainkey.hosting.test.
mail-office-test._domainkey.hosting.test. 60 IN TXT "{DKIM_KEY}"
spaced.test.           60 IN TXT  "v=spf1 -all"
_dmarc.spaced.test.    60 IN TXT  "v=DMARC1; p=reject"
mail._domainkey.spaced.test. 60 IN TXT "v = DKIM1; k = rsa; p = MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"
revoked.test.          60 IN TXT  "v=spf1 -all"
_dmarc.revoked.test.   60 IN TXT  "v=DMARC1; p=reject"
default._domainkey.revoked.test. 60 IN TXT "v=DKIM1; k=rsa; p="
split.test.            60 IN TXT  "v=spf1 -all"
_dmarc.split.test.     60 IN TXT  "v=DMARC1; p=reject"
default._domainkey.split.test. 60 IN TXT "v=DKIM1; k=ed25519; t=y; p=11qYAYKxCrfVS/" "7TyWQHOg7hcvPapiMlrwIaaPcHURo="
orgpolicy.test.        60 IN TXT  "v=spf1 -all"
_dmarc.orgpolicy.test. 60 IN TXT  "v=DMARC1; p=none; sp=reject"
news.orgpolicy.test.   60 IN TXT  "v=spf1 -all"
xn--e1afmkfd.test.     60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
platform.test.         60 IN TXT  "v=spf1 include:spf.postroute.test -all"
workspace.test.        60 IN TXT  "v=spf1 include:_spf.google.com ~all"
_spf.google.com.       60 IN TXT  "v=spf1 {GOOGLE} ~all"
_netblocks.google.com. 60 IN TXT  "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ~all"
_netblocks2.google.com. 60 IN TXT "v=spf1 ip6:2001:4860:4000::/36 ~all"
_netblocks3.google.com. 60 IN TXT "v=spf1 ip4:172.217.0.0/19 ~all"
_spf.yandex.net.       60 IN TXT  "v=spf1 redirect=_spf2.yandex.net"
_spf2.yandex.net.      60 IN TXT  "v=spf1 ip4:77.88.0.0/18 ~all"
crowded.test.          60 IN TXT  "v=spf1 {CROWDED} include:_spf.google.com -all"
_dmarc.crowded.test.   60 IN TXT  "v=DMARC1; p=reject"
roomy.test.            60 IN TXT  "v=spf1 {ROOMY} include:_spf.yandex.net -all"
_dmarc.roomy.test.     60 IN TXT  "v=DMARC1; p=reject"
full.test.             60 IN TXT  "v=spf1 {CROWDED} -all"
_dmarc.full.test.      60 IN TXT  "v=DMARC1; p=reject"
denied.test.           60 IN TXT  "v=spf1 -ip4:5.45.200.0/24 ~all"
_dmarc.denied.test.    60 IN TXT  "v=DMARC1; p=reject"
twice.test.            60 IN TXT  "v=spf1 ip4:{OTHER_IP} -all"
twice.test.            60 IN TXT  "v=spf1 include:_spf.google.com ~all"
_dmarc.twice.test.     60 IN TXT  "v=DMARC1; p=reject"
deadinclude.test.      60 IN TXT  "v=spf1 include:gone.test ip4:{COMPANY_IP} -all"
_dmarc.deadinclude.test. 60 IN TXT "v=DMARC1; p=reject"
typo.test.             60 IN TXT  "v=spf1 inclde:_spf.google.com -all"
_dmarc.typo.test.      60 IN TXT  "v=DMARC1; p=reject"
pasted.test.           60 IN TXT  "v=spf1 ip4:{COMPANY_IP} –all"
dmarctwice.test.       60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
_dmarc.dmarctwice.test. 60 IN TXT "v=DMARC1; p=none; rua=mailto:a@dmarctwice.test"
_dmarc.dmarctwice.test. 60 IN TXT "v=DMARC1; p=reject"
misspelt.test.         60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
_dmarc.misspelt.test.  60 IN TXT  "v=DMARC1; p=rejected"
_dmarc.orgtwice.test.  60 IN TXT  "v=DMARC1; p=none"
_dmarc.orgtwice.test.  60 IN TXT  "v=DMARC1; p=quarantine"
news.orgtwice.test.    60 IN TXT  "v=spf1 ip4:{COMPANY_IP} -all"
broken.orgpolicy.test. 60 IN TXT  "v=spf1 -all"
shouting.test.         60 IN TXT  "v=spf1 -all"
_dmarc.shouting.test.  60 IN TXT  "V=DMARC1; P=Reject; RUA=mailto:dmarc@shouting.test"
rollout.test.          60 IN TXT  "v=spf1 -all"
_dmarc.rollout.test.   60 IN TXT  "v=DMARC1; p=reject; pct=0"
halfway.test.          60 IN TXT  "v=spf1 -all"
_dmarc.halfway.test.   60 IN TXT  "v=DMARC1; p=reject; pct=50"
_dmarc.broken.orgpolicy.test. 60 IN TXT "v=DMARC1; p=strict"
_dmarc.pasted.test.    60 IN TXT  "v=DMARC1; p=reject"
_dmarc.workspace.test. 60 IN TXT  "v=DMARC1; p=reject"
"""
# Answers longer than a classic UDP datagram come truncated: the client asks again over TCP.
for n in range(1, 7):
    ZONE += f'big.test. 60 IN TXT "verification-{n}={"x" * 100}"\n'
ZONE += f'big.test. 60 IN TXT "v=spf1 ip4:{COMPANY_IP} -all"\n'
for n in range(1, 12):
    ZONE += f't{n}.m.test. 60 IN TXT "v=spf1 ip4:5.45.201.{n} -all"\n'


class Resolver(ZoneResolver):
    queries = 0

    def resolve(self, request, handler):
        if str(request.q.qname).rstrip(".").endswith("timeout.test"):
            raise DNSError("dropped on purpose: the client must time out")
        if str(request.q.qname).rstrip(".").endswith("slow.test"):
            time.sleep(SLOW)
        if str(request.q.qname).rstrip(".").endswith("servfail.test"):
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        self.queries += 1
        reply = super().resolve(request, handler)
        # As a recursive resolver answers: the CNAME chain, then the records at its end.
        for _ in range(8):
            last = reply.rr[-1] if reply.rr else None
            if last is None or last.rtype != QTYPE.CNAME or request.q.qtype == QTYPE.CNAME:
                break
            follow = DNSRecord.question(str(last.rdata.label), QTYPE[request.q.qtype])
            reply.rr.extend(super().resolve(follow, handler).rr)
        return reply


class Handler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        """As DNSHandler, but a UDP answer over 512 bytes (RFC 1035's limit
        without EDNS) becomes the question with TC set, as real servers send
        it (dnslib's own truncation drops the question, which clients refuse)."""
        request = DNSRecord.parse(data)
        packed = self.server.resolver.resolve(request, self).pack()
        if self.protocol == "udp" and len(packed) > 512:
            truncated = request.reply()
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed


class DnsServer:
    def __init__(self) -> None:
        resolver, logger = Resolver(ZONE), DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
        # A UDP port the system chose may be taken for TCP (another test's
        # connection): then another pair is tried.
        for attempt in range(20):
            self.udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=logger, handler=Handler)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(resolver, address="127.0.0.1", port=self.port, tcp=True, logger=logger)
                break
            except OSError:
                self.udp.server.server_close()
                if attempt == 19:
                    raise
        self.resolver = resolver

    def start(self) -> None:
        for server in (self.udp, self.tcp):  # a short poll, so that stopping is quick
            threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.udp.stop()
        self.tcp.stop()
        self.udp.server.server_close()
        self.tcp.server.server_close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dns_checks(dns_server: DnsServer, settings) -> DnsServer:
    """The checks pointed at the test's DNS server, with an empty cache."""
    from django.core.cache import cache

    settings.DNS_RESOLVER = dns_server.address
    settings.DNS_TIMEOUT = 2.0
    cache.clear()
    return dns_server
