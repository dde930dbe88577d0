"""The dashboard's version stamp: one query that tells whether anything the
dashboard's JSON shows may have changed, so that a poll when nothing did is
answered "304 Not Modified" without building the dashboard.

The stamp is a digest of the current minute and of cheap, indexed reads of
the rows the JSON is made of. Nothing is written for it: the dispatcher
bumps no counter (one counter row per tenant, bumped per letter, would
serialise every worker sending for that tenant), and its letters' own row
versions (PostgreSQL's xmin, new for every committed change of a row) carry
the news. What each part covers:

1. The clock. The windows roll with time alone (the last 60 minutes, the
   last 24 hours, the 10-minute rates, the chart's hours): they are counted
   by the minute (mailing.limits), so the current UTC minute is in the
   stamp and every open dashboard is rebuilt at least once a minute. The
   moments that change a server's state between two minutes are in it too:
   whether each server's rest (backoff_until) and each hold on the tenant
   (TenantRest) is over yet.
2. Servers, holds and quotas: the row versions of the tenant's servers and
   the platform's, of the tenant's holds, of the platform quotas of its
   quota group and of the group's members (any edit, health change, rest,
   quota).
3. Mailings: the row versions of the tenant's running mailings (state,
   resume time, a new or finished mailing).
4. Letters, without counting a mailing's letters: every letter the
   dispatcher changes is claimed first (status *sending*), so
   - the versions of the tenant's letters being sent (those of a mailing
     just paused too; a small partial index) change with every claim and
     every result (sent, failed, deferred, given back), and
   - a result whose claim was not seen by the previous poll still moves
     its mailing's newest sent_at (sent) or its count of failed letters
     (an index-only count of a mailing's failed letters; likewise bounced,
     which a bounce report changes long after sending).
5. Usage: the count, sum and row versions of the usage buckets of the
   servers shown, over the last BUCKET_MINUTES minutes. Every reservation
   and release writes the bucket of the minute it was made in, a few
   minutes ago at most (a batch lasts 4 minutes at most), whichever tenant
   makes it, so a platform server's shared windows follow the others'
   letters too.
6. The getting-started checklist's steps (a template, contacts, a started
   mailing; servers are in 2) and the tenant's imports: the versions of
   those under way, and how many there are.
7. What the response is made in: the language, the time zone, and
   PAYLOAD_VERSION (bump it when the JSON's shape or wording changes, so
   that an open page does not keep the old one).

Why the versions are exact under concurrent sending: a row's version is
its xmin (the transaction that wrote what a reader sees) and its ctid
(where that version lies: it tells apart two writes of one transaction),
and a reader sees a version only once it is committed. Two polls that see
the same versions of a set of rows saw the same rows, whatever the order
in which writers committed (unlike max(id) or max(updated_at), which a slow
writer can commit below).

What the stamp does not chase: a letter claimed after one poll and failed
after DATA before the next, in a batch whose reservation that poll already
saw (its claim and result both fell in the three seconds between two
polls, and the batch gave no room back), and a sent letter whose worker's
clock is behind the clock of the letters before it. Such a change shows at
the next claim, result or reservation, and at the latest with the next
minute. The 'updated' time in the JSON is when the figures were made: a
304 says they still hold."""

import hashlib
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.utils import timezone, translation

from accounts.models import Tenant

from ..limits import MINUTE, trunc_minute
from ..selectors import FirstSteps

PAYLOAD_VERSION = "2"
BUCKET_MINUTES = 10

# A PL/pgSQL function made by migration mailing/0012, which holds its text
# and says why: run with a generic plan made once a session, the round trip
# took 0.74 ms against 2.4-2.9 ms as a plain statement planned at every
# poll. Its first column is the session's row versions (mailing.dashboard.
# poll), NULL for no session; the others are the stamp's parts, in order.
STAMP_SQL = "SELECT * FROM postroute_dashboard_stamp(%s, %s, %s, %s, %s)"


class Stamp(NamedTuple):
    value: str
    steps: FirstSteps  # the checklist's mailing steps as the stamp read them: the JSON shows them


def dashboard_stamp(tenant: Tenant) -> Stamp | None:
    """A short digest that changes whenever the tenant's dashboard JSON
    may change (see the module's docstring); one query. None on SQLite
    (development): no row versions there, every poll builds the JSON."""
    if connection.vendor != "postgresql":
        return None
    _, stamp = stamp_along(tenant.pk)
    return stamp


def stamp_along(tenant_id: int, session_key: str | None = None) -> tuple[str | None, Stamp]:
    """The stamp, and in the same round trip the row versions of the
    session `session_key` (mailing.dashboard.poll; None without one):
    (those versions, the stamp). PostgreSQL only."""
    now = timezone.now()
    recent = trunc_minute(now) - BUCKET_MINUTES * MINUTE
    params = [session_key, tenant_id, settings.DEPLOYMENT_MODE == "saas", now, recent]
    with connection.cursor() as cursor:
        cursor.execute(STAMP_SQL, params)
        versions, *parts = cursor.fetchone()
    context = (
        PAYLOAD_VERSION,
        trunc_minute(now).isoformat(),
        translation.get_language() or "",
        timezone.get_current_timezone_name(),
    )
    text = "|".join([*context, *(str(part) if part is not None else "" for part in parts)])
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return versions, Stamp(digest, FirstSteps(*parts[-3:]))
