"""The real-world mix: several tenants sharing the platform server, each
with a server of its own, and what the world sends them all at once:
international addresses (to servers with and without SMTPUTF8), content
refusals of one tenant's letters, a 4xx storm, a rate limit, unknown
recipients, and connection slots held by others. The clock moves to each
waiting mailing's resume time until every mailing has finished.

Whatever happens: no letter lost, none accepted twice, no server over its
limit nor a tenant over its platform quota, the platform server never taken
out by what a tenant sent, no letter left *sending*."""

import random
import re
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Tenant
from mailing import dispatch
from mailing import mailings as services
from mailing.models import Letter, Mailing
from mailing.sink import SinkHandler
from servers.models import Health, SmtpServer
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server
from tests.services import hold_slots, require_postgresql
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db
L = Letter.Status
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
SEED = 20261202
PER_TENANT = 60


class World(SinkHandler):
    """A server that answers as the providers do, by the recipient."""

    def __init__(self, name: str, *, storm: int = 0, rate: int = 0) -> None:
        super().__init__()
        self.name, self.storm, self.rate = name, storm, rate
        self.accepted: list[str] = []
        self.mails = 0
        self.played: Counter = Counter()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails += 1
        if self.rate and self.mails % self.rate == 0:
            self.played["rate limit"] += 1
            return "450 4.7.1 Error: too much mail from 127.0.0.1"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.storm > 0:
            self.storm -= 1
            self.played["storm"] += 1
            return "451 4.3.0 Temporary local problem, try again"
        if address.startswith("gone"):
            self.played["unknown"] += 1
            return "550 5.1.1 Recipient address rejected: User unknown"
        if address.startswith("grey"):
            self.played["greylisted"] += 1
            return "450 4.2.0 Greylisted, see http://postgrey"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0].startswith("spammy"):
            self.played["content"] += 1
            return "554 5.7.1 Message rejected as spam"
        status = await super().handle_DATA(server, session, envelope)
        found = MESSAGE_ID.search(envelope.original_content or b"")
        with self.lock:
            self.accepted.append(found.group(1).decode() if found else "?")
        return status


def addresses(rng: random.Random, tenant: str) -> list[str]:
    kinds = ["plain"] * 10 + ["idn", "utf8", "gone", "grey", "spammy"]
    emails = []
    for i in range(PER_TENANT):
        kind = rng.choice(kinds)
        emails.append(
            {
                "plain": f"r{i}@{tenant}.example",
                "idn": f"r{i}@пример-{tenant}.рф",
                "utf8": f"ján{i}@{tenant}.example",
                "gone": f"gone{i}@{tenant}.example",
                "grey": f"grey{i}@{tenant}.example",
                "spammy": f"spammy{i}@{tenant}.example",
            }[kind]
        )
    return emails


def most_in_any(letters: list[Letter], span: timedelta) -> int:
    """The most letters sent within any interval of `span`."""
    times = sorted(le.sent_at for le in letters)
    return max((sum(1 for t in times[i:] if t - start < span) for i, start in enumerate(times)), default=0)


def test_the_real_world_mix_loses_nothing_and_harms_no_other_tenant(settings):
    require_postgresql()
    settings.DISPATCH_BATCH = 10
    settings.DISPATCH_MAX_ATTEMPTS, settings.DISPATCH_RETRY_BASE, settings.DISPATCH_RETRY_MAX = 3, 60, 120
    rng = random.Random(SEED)
    tenants = [Tenant.objects.create(name=n, slug=n) for n in ("alpha", "beta", "gamma")]
    platform_world = World("platform", rate=17)
    own_worlds = [World("alpha own", storm=4), World("beta own"), World("gamma own", rate=9)]
    mailings, servers = [], {}
    with ExitStack() as stack:
        platform_c, _ = stack.enter_context(smtp_server(handler=platform_world, enable_SMTPUTF8=True))
        platform = make_server(None, name="Platform", port=platform_c.port, tenant_daily_quota=45, max_per_hour=400)
        servers[platform.pk] = platform_world
        for tenant, world, utf8 in zip(tenants, own_worlds, [False, True, False], strict=True):
            c, _ = stack.enter_context(smtp_server(handler=world, enable_SMTPUTF8=utf8))
            own = make_server(tenant, name=f"{tenant.slug} own", port=c.port, max_per_hour=25, max_connections=1)
            servers[own.pk] = world
            contact_list = make_list(tenant, "L", addresses(rng, tenant.slug))
            mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
            services.mailing_save(mailing=mailing, lists=[contact_list], servers=[own, platform])
            services.mailing_start(mailing=mailing)
            mailings.append(mailing)
        # Someone else's chains hold gamma's own server for the first passes.
        gamma_own = SmtpServer.objects.get(tenant=tenants[2])
        held = hold_slots(gamma_own, gamma_own.max_connections)
        now = timezone.now()
        results = {m.pk: "" for m in mailings}
        for step in range(400):
            if step == 3:
                held.close()
            for mailing in mailings:
                if results[mailing.pk] == "done":
                    continue
                for _ in range(100):
                    results[mailing.pk] = dispatch.run_mailing(mailing_id=mailing.pk, now=now)
                    if results[mailing.pk] != "more":
                        break
                assert not Letter.objects.filter(status=L.SENDING).exists(), "a letter left sending"
                assert SmtpServer.objects.get(pk=platform.pk).health != Health.FAILING
            if all(r == "done" for r in results.values()):
                break
            resumes = [m.resume_at for m in Mailing.objects.filter(pk__in=[m.pk for m in mailings]) if m.resume_at]
            # To the next resume time (a busy server: a moment later).
            now = max(now + timedelta(seconds=5), min(resumes, default=now + timedelta(minutes=1)))
        else:
            state = [
                (m.status, m.resume_at, Counter(m.letters.values_list("status", flat=True)))
                for m in Mailing.objects.filter(pk__in=[m.pk for m in mailings])
            ]
            rests = list(SmtpServer.objects.values_list("name", "backoff_until", "rest_reason", "health"))
            raise AssertionError(f"the mix never settled at {now}: {results} {state} {rests}")

    letters = list(Letter.objects.filter(mailing__in=mailings))
    lost = [le for le in letters if le.status not in (L.SENT, L.FAILED) or not le.last_reply]
    accepted = Counter(mid for world in servers.values() for mid in world.accepted)
    twice = [mid for mid, n in accepted.items() if n > 1]
    sent = {f"<{le.public_id}@mail.test>" for le in letters if le.status == L.SENT}
    assert set(accepted) == sent
    # No server over its limit, no tenant over its platform quota.
    overshoot = 0
    for server in SmtpServer.objects.filter(pk__in=servers):
        through = [le for le in letters if le.status == L.SENT and le.server_id == server.pk]
        overshoot += most_in_any(through, timedelta(hours=1)) > server.max_per_hour
        if server.is_platform:
            for tenant in tenants:
                mine = [le for le in through if le.tenant_id == tenant.pk]
                overshoot += most_in_any(mine, timedelta(days=1)) > 45
    platform.refresh_from_db()
    disabled = int(platform.health == Health.FAILING)
    played = sum((w.played for w in servers.values()), Counter())
    print(
        f"\nreal-world mix: {len(letters)} letters, {len(tenants)} tenants, lost {len(lost)}, twice {len(twice)},"
        f" overshoot {overshoot}, platform server disabled by a tenant {disabled},"
        f" stuck in sending {Letter.objects.filter(status=L.SENDING).count()} ({dict(played)})"
    )
    assert (len(lost), len(twice), overshoot, disabled) == (0, 0, 0, 0), lost
    assert {"storm", "unknown", "greylisted", "content", "rate limit"} <= set(played)
    # International addresses: the IDN domains went as punycode; a non-ASCII
    # local part failed only where no server offered SMTPUTF8.
    for le in letters:
        if "пример" in le.email:
            assert le.status in (L.SENT, L.FAILED) and "international" not in le.last_reply
