"""Builders for the dashboard tests: usage buckets at given minutes, and
running mailings with letters in given states, made directly (the reads
under test do not care how the rows came to be)."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Tenant
from mailing.limits import trunc_minute
from mailing.models import Letter, Mailing, MailingServer, UsageBucket
from servers.models import SmtpServer

from .builders import make_template

L = Letter.Status


def bucket(server: SmtpServer, tenant: Tenant, at: datetime, count: int) -> UsageBucket:
    return UsageBucket.objects.create(server=server, tenant=tenant, minute=trunc_minute(at), count=count)


def running_mailing(
    tenant: Tenant,
    servers: list[SmtpServer],
    *,
    queued: int = 0,
    sent_at: Sequence[datetime] = (),
    status: str = Mailing.Status.ACTIVE,
    started_at: datetime | None = None,
    resume_at: datetime | None = None,
    name: str = "Spring sale",
    **counts: int,
) -> Mailing:
    """A started mailing with `queued` letters waiting, one sent letter per
    `sent_at`, and any other status by name: failed=2, bounced=1."""
    mailing = Mailing.objects.create(
        tenant=tenant, name=name, template=make_template(tenant), status=status,
        started_at=started_at or (min(sent_at) if sent_at else timezone.now()),
        resume_at=resume_at,
    )  # fmt: skip
    MailingServer.objects.bulk_create(
        MailingServer(mailing=mailing, server=server, position=i) for i, server in enumerate(servers)
    )
    letters = [Letter(status=L.QUEUED) for _ in range(queued)]
    letters += [Letter(status=L.SENT, sent_at=at) for at in sent_at]
    letters += [Letter(status=status) for status, n in counts.items() for _ in range(n)]
    for i, letter in enumerate(letters):
        letter.tenant, letter.mailing, letter.email = tenant, mailing, f"r{i}@x.test"
    Letter.objects.bulk_create(letters)
    mailing.letter_count = len(letters)
    mailing.save(update_fields=["letter_count"])
    return mailing


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
