"""Rate limits in the database: an event counts against several limits at
once (an address, a user, a client address), all or none.

Each key has a window that opens with its first event and lasts the
limit's window; within it at most `limit` events pass. The rows of all the
keys are created if missing and locked in key order (so two requests never
wait for each other crosswise), checked, and only then incremented: racing
requests never let one event too many through, and a refused event counts
against no key."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import RateCounter


@dataclass(frozen=True)
class Limit:
    name: str  # e.g. "invitation:to:ann@example.com"; stored hashed
    limit: int
    window: timedelta

    @property
    def key(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()


class RateLimited(Exception):
    def __init__(self, retry_at: datetime, names: list[str]) -> None:
        super().__init__(f"rate limited until {retry_at:%H:%M:%S}")
        self.retry_at = retry_at
        self.names = names  # the spent limits

    @property
    def minutes(self) -> int:
        """Minutes to wait, rounded up, at least 1."""
        return max(1, -(-int((self.retry_at - timezone.now()).total_seconds()) // 60))


def hit(limits: Sequence[Limit], *, now: datetime | None = None) -> None:
    """Count one event against every limit, or raise RateLimited and count
    nothing."""
    now = now or timezone.now()
    by_key = {limit.key: limit for limit in limits}
    keys = sorted(by_key)
    with transaction.atomic():
        RateCounter.objects.bulk_create(
            [RateCounter(key=key, count=0, window_start=now, expires_at=now) for key in keys], ignore_conflicts=True
        )
        rows = list(RateCounter.objects.select_for_update().filter(key__in=keys).order_by("key"))
        spent = [row for row in rows if row.expires_at > now and row.count >= by_key[row.key].limit]
        if spent:
            raise RateLimited(max(row.expires_at for row in spent), [by_key[row.key].name for row in spent])
        for row in rows:
            if row.expires_at <= now:  # the window closed: a new one opens
                row.count, row.window_start, row.expires_at = 0, now, now + by_key[row.key].window
            row.count += 1
            row.save(update_fields=["count", "window_start", "expires_at"])


def give_back(limits: Sequence[Limit]) -> None:
    """Undo one event that did not happen after all (a form that turned
    out invalid): one UPDATE, safe without locks."""
    RateCounter.objects.filter(key__in=[limit.key for limit in limits], count__gt=0).update(count=F("count") - 1)


def purge(*, now: datetime | None = None) -> int:
    """Delete closed windows (a periodic task), so that a flood of
    made-up addresses leaves no rows behind."""
    deleted, _ = RateCounter.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
