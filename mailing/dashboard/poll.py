"""The dashboard's poll in one query: a session that the whole request stack
let through, and whose rows have not changed since, is let through again
without the stack.

Every open dashboard asks for /dashboard/data.json every 3 seconds. Through
the whole stack a poll reads the session, the user, the second factor and
the membership (four queries, and the ORM's and the session's decoding
work) before the version stamp can say "304"; those rows almost never
change between two polls. So:

1. A poll with a session cookie reads, in one query, the row version
   (PostgreSQL's xmin and ctid, new with every committed change of a row)
   of everything the stack reads to let that session through: the session
   itself (and that it has not expired), its user, the user's second-factor
   devices, and the user's memberships with their organisations (VERSIONS_SQL,
   a function of migration mailing/0012).
2. When the stack then lets the poll through, the view keeps a *pass* in
   the cache under the session's key: those versions, the organisation it
   chose and the user's saved language.
3. The next poll reads the same versions, and the pass's organisation's
   stamp, in one query. The same versions: every row the stack decided
   from is what it was when it let the session through, so it would decide
   the same; the poll is answered here (304 when the stamp matches, else
   the JSON). Anything different or missing (logged out, sessions ended by
   a password change, two-factor reset or staff, the user or the
   organisation suspended, the membership removed, the session expired or
   switched to another organisation): the pass is dropped and the poll
   goes the whole way, which decides again.

The versions are read before the stack checks the rows, so a change
committed while it checks gives a version newer than the pass's, and the
next poll goes the whole way. The cache holds no authority, only what to
compare with the database at every poll: a pass lost, kept by another
process (a per-process cache) or stale costs one full poll, never a wrong
answer. What the answer depends on besides those rows is the request's own
(the language cookie and Accept-Language, read at every poll) or the
deployment's: the key is made with SECRET_KEY (rotating it ends passes as it
ends sessions), PASS_VERSION is in it and a pass lives PASS_SECONDS at
most, so a deploy's new rules apply to open pages within that.

Skipped for such a poll, as it needs none of them: CommonMiddleware (its
check of the Host against ALLOWED_HOSTS is made here), CSRF (a GET), the
messages, and the language middleware, whose headers (Content-Language,
Vary) and cookie are reproduced here (a cookie out of step with the saved
language sends the poll the whole way)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.crypto import salted_hmac

from accounts import languages
from accounts.middleware import cookie_out_of_step
from accounts.models import Tenant
from accounts.sessions import well_formed
from accounts.timezones import zone_of
from config import requestids

from .stamp import Stamp, stamp_along

logger = logging.getLogger(__name__)

PASS_VERSION = "2"
PASS_SECONDS = 600

# The session key and the time are the arguments. A session without a user
# (signed out) or past its expiry gives NULL. The statement is a PL/pgSQL
# function made by migration mailing/0012 (its text and why are there), and
# the stamp's function reads it as its first column.
VERSIONS_SQL = "SELECT postroute_poll_versions(%s, %s)"


@dataclass(frozen=True)
class Pass:
    versions: str
    tenant: Tenant  # as the stack loaded it: its row's version is in `versions`
    language: str  # the user's saved choice ("" for none)


@dataclass
class Poll:
    """What the middleware read for a poll that goes the whole way."""

    session_key: str
    versions: str | None
    stamp: tuple[int, str, str, Stamp] | None = None  # (tenant, language, zone, stamp) read along the versions


def _key(session_key: str) -> str:
    # Keyed with SECRET_KEY, as the session's own signature is: rotating it
    # to end every session ends every pass too (and the cache never holds
    # a session key).
    return f"dashboard-poll:{PASS_VERSION}:{salted_hmac('dashboard-poll', session_key).hexdigest()}"


def _read_versions(session_key: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(VERSIONS_SQL, [session_key, timezone.now()])
        return cursor.fetchone()[0]


def _tenant_ids(versions: str) -> set[str]:
    memberships = versions.rsplit("|", 1)[1]
    return {m.split(":", 1)[0] for m in memberships.split(",") if m}


class DashboardPollMiddleware:
    """Right after SessionMiddleware: before anything reads the session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._path: str | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if request.method != "GET" or not well_formed(session_key) or request.path_info != self._poll_path():
            return self.get_response(request)
        if connection.vendor != "postgresql":  # no row versions: always the whole way
            return self.get_response(request)
        # The whole way checks the Host against ALLOWED_HOSTS in CommonMiddleware,
        # which a poll answered here skips: without this, a foreign Host (DNS
        # rebinding, a proxy passing any Host) got the answer the whole way
        # refuses with a 400. DisallowedHost becomes that same 400.
        request.get_host()
        found = _cache_call(cache.get, _key(session_key))
        if isinstance(found, Pass):
            response = self._let_through(request, session_key, found)
            if response is not None:
                return response
            _cache_call(cache.delete, _key(session_key))
        else:
            request.dashboard_poll = Poll(session_key, _read_versions(session_key))
        return self.get_response(request)

    def _poll_path(self) -> str:
        if self._path is None:
            self._path = reverse("dashboard:data")
        return self._path

    def _let_through(self, request: HttpRequest, session_key: str, held: Pass) -> HttpResponse | None:
        """The poll answered with the pass, or None (with request.dashboard_poll
        set) when it must go the whole way."""
        if cookie_out_of_step(request, held.language):
            request.dashboard_poll = Poll(session_key, _read_versions(session_key))
            return None
        tenant = held.tenant
        language = languages.of_request(request, saved=held.language, tenant=tenant)
        zone = zone_of(tenant.time_zone)
        with translation.override(language), timezone.override(zone):
            versions, stamp = stamp_along(tenant.pk, session_key)
            request.dashboard_poll = Poll(
                session_key, versions, (tenant.pk, language, timezone.get_current_timezone_name(), stamp)
            )
            if versions != held.versions or str(tenant.pk) not in _tenant_ids(versions):
                return None
            from ..views.dashboard import answer_poll  # the view's module imports this one

            with requestids.bound(tenant_id=tenant.pk):
                response = answer_poll(request, tenant, stamp)
        # What the session and language middleware add to the whole way's answer.
        patch_vary_headers(response, ("Accept-Language", "Cookie"))
        response.headers.setdefault("Content-Language", language)
        return response


def stamp_of(request: HttpRequest, tenant: Tenant, read: Callable[[Tenant], Stamp | None]) -> Stamp | None:
    """The stamp the middleware read along the versions, when it is the one
    this request needs (the same organisation, language and zone; it was
    read before the JSON is built, as the stamp must be), else a fresh one."""
    poll: Poll | None = getattr(request, "dashboard_poll", None)
    wanted = (tenant.pk, translation.get_language(), timezone.get_current_timezone_name())
    if poll is not None and poll.stamp is not None and poll.stamp[:3] == wanted:
        return poll.stamp[3]
    return read(tenant)


def remember(request: HttpRequest) -> None:
    """Keep a pass for the session of a poll the whole stack let through
    (called by the view, so only once the stack has)."""
    poll: Poll | None = getattr(request, "dashboard_poll", None)
    if poll is None or poll.versions is None or request.session.session_key != poll.session_key:
        return
    tenant = request.tenant
    if str(tenant.pk) not in _tenant_ids(poll.versions):
        return
    # A copy without what the request cached on it (related rows).
    clean = Tenant(**{f.attname: getattr(tenant, f.attname) for f in Tenant._meta.concrete_fields})
    clean._state.adding, clean._state.db = False, tenant._state.db
    held = Pass(poll.versions, clean, request.user.language)
    _cache_call(cache.set, _key(poll.session_key), held, PASS_SECONDS)


def _cache_call(method: Callable[..., object], *args: object) -> object:
    """A cache that does not answer (Redis restarting) means no pass: the
    poll goes the whole way, as it did before passes, rather than failing."""
    try:
        return method(*args)
    except Exception:  # whatever the cache backend raises
        logger.warning("dashboard poll: the cache did not answer", exc_info=True)
        return None
