"""Attacks on the dashboard's fast poll (mailing.dashboard.poll), as an
outsider or a revoked insider would make them, through HTTP.

Every way a session loses its right to the dashboard, done through the view
that does it, refuses the very next poll as the whole request stack does (a
redirect or a 403: never the JSON, nor a 304 that tells a revoked session
"nothing changed"). Nothing a client sends (the cookie, the Host, the
method, the path, the conditional headers, the language) reaches a pass
beyond its own session's, and what a pass answers is what the whole way
answers, headers included. A pass planted in the cache answers nothing the
database does not confirm. Revocations racing a poll (committed from a
second PostgreSQL connection) are honoured by the next poll at the latest.
Each test runs with Redis and with the per-process cache."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore as PlainStore
from django.core.cache import cache
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.models import Membership, Role, Tenant, UserSession
from accounts.sessions import SessionStore, end_sessions
from mailing.dashboard import poll as dashboard_poll
from mailing.views import dashboard as dashboard_views
from tests.accounts.helpers import last_link
from tests.conftest import PASSWORD, make_person, totp_code
from tests.mailing.dashboard_builders import running_mailing
from tests.mailing.poll_fixtures import _postgresql, shared_or_not  # noqa: F401 (fixtures that apply themselves)
from tests.servers.factories import make_server
from tests.services import other_session

DATA = "dashboard:data"
NEW_PASSWORD = "another horse battery staple 97"


class Clock:
    def __init__(self) -> None:
        self.at = timezone.now().replace(second=30, microsecond=0)

    def __call__(self):
        return self.at


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """A minute that stands still (the stamp holds the minute), moved by hand."""
    at = Clock()
    monkeypatch.setattr(timezone, "now", at)
    return at


@pytest.fixture
def board(tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=100)
    return running_mailing(tenant_a, [server], queued=3, name="Spring sale")


def poll(client: Client, etag: str | None = None, path: str | None = None, **headers):
    if etag is not None:
        headers["HTTP_IF_NONE_MATCH"] = etag
    return client.get(path or reverse(DATA), **headers)


def queries_of(call) -> tuple[object, int]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return response, len(queries)


def passed(client: Client, **headers) -> str:
    """Two polls: the whole way (leaving a pass), then from the pass (one
    query); the ETag."""
    etag = poll(client, **headers)["ETag"]
    response, count = queries_of(lambda: poll(client, etag, **headers))
    assert (response.status_code, count) == (304, 1)
    return etag


def refused(response, status: int = 302, to: str | None = None) -> None:
    """What the whole stack answers a session without the right: no data,
    no ETag, and not a 304."""
    assert response.status_code == status, response.status_code
    assert "ETag" not in response
    assert b"Spring sale" not in response.content and b'"mailings"' not in response.content
    if to is not None:
        assert response["Location"].split("?")[0] == to


def login_url() -> str:
    return reverse(django_settings.LOGIN_URL)


def second_session(person) -> Client:
    """The person signed in (both factors) in another browser."""
    client = Client()
    client.force_login(person.user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = person.device.persistent_id
    session.save()
    return client


def same_session(person) -> Client:
    """Another browser with the person's session cookie (a stolen one)."""
    other = Client()
    name = django_settings.SESSION_COOKIE_NAME
    other.cookies[name] = person.client.cookies[name].value
    return other


def session_key(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def with_cookie(value: str) -> Client:
    client = Client()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = value
    return client


# Revocations through the views that make them


def test_a_password_change_refuses_the_users_other_sessions_and_keeps_this_one(alice, board, clock):
    other = second_session(alice)
    etag = passed(other)
    passed(alice.client)
    changed = alice.client.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    refused(poll(other, etag), to=login_url())
    assert poll(alice.client, etag).status_code == 304  # the session that changed it stays signed in


def test_a_new_password_by_the_emailed_link_refuses_every_session(
    alice, board, clock, django_capture_on_commit_callbacks
):
    etag = passed(alice.client)
    stranger = Client()
    with django_capture_on_commit_callbacks(execute=True):  # the letter goes from the `mail` queue
        stranger.post(reverse("accounts:password_reset"), {"email": alice.user.email})
    link = last_link(alice.user.email)
    form_url = stranger.get(link)["Location"]
    done = stranger.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done["Location"] == reverse("accounts:password_reset_complete")
    refused(poll(alice.client, etag), to=login_url())


def test_new_recovery_codes_refuse_the_users_other_sessions(alice, board, clock):
    other = second_session(alice)
    etag = passed(other)
    assert alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD}).status_code in (200, 302)
    refused(poll(other, etag), to=login_url())


def test_replacing_the_app_refuses_the_users_other_sessions(alice, board, clock):
    """This session keeps its right until the new app is confirmed (the
    view's own rule); every other one loses it at once."""
    other = second_session(alice)
    etag = passed(other)
    passed(alice.client)
    assert alice.client.post(reverse("accounts:2fa_reset"), {"password": PASSWORD}).status_code == 302
    refused(poll(other, etag), to=login_url())
    response, count = queries_of(lambda: poll(alice.client, etag))
    assert response.status_code == 304 and count > 1  # its session changed: the whole way decided


def test_staff_resetting_two_factor_in_the_admin_refuses_the_next_poll(alice, board, clock, staff_client):
    etag = passed(alice.client)
    done = staff_client.post(
        reverse("admin:accounts_user_changelist"), {"action": "reset_two_factor", "_selected_action": [alice.user.pk]}
    )
    assert done.status_code == 302
    refused(poll(alice.client, etag), to=login_url())


def test_staff_suspending_the_organisation_in_the_admin_refuses_the_next_poll(
    alice, tenant_a, board, clock, staff_client
):
    etag = passed(alice.client)
    done = staff_client.post(
        reverse("admin:accounts_tenant_changelist"), {"action": "suspend", "_selected_action": [tenant_a.pk]}
    )
    assert done.status_code == 302
    refused(poll(alice.client, etag), status=403)
    refused(poll(alice.client, "*"), status=403)


def test_logging_out_refuses_the_stolen_copy_of_the_cookie(alice, board, clock):
    stolen = same_session(alice)
    etag = passed(stolen)
    alice.client.post(reverse("accounts:logout"))
    refused(poll(stolen, etag), to=login_url())
    refused(poll(stolen, "*"), to=login_url())


def test_a_removed_member_is_refused_at_the_next_poll(alice, bob, board, clock):
    etag = passed(bob.client)
    membership = Membership.objects.get(user=bob.user)
    assert alice.client.post(reverse("accounts:member_remove", args=[membership.public_id])).status_code == 302
    refused(poll(bob.client, etag), to=reverse("accounts:tenant_new"))


def test_a_member_who_leaves_in_one_tab_is_refused_in_the_other(bob, alice, board, clock):
    other = second_session(bob)
    etag = passed(other)
    assert bob.client.post(reverse("accounts:team_leave")).status_code == 302
    refused(poll(other, etag), to=reverse("accounts:tenant_new"))


def test_a_demoted_admin_goes_the_whole_way_once(alice, carol, board, clock):
    """The dashboard is every member's, so the answer stays; the change
    of role still sends the poll through the stack."""
    etag = passed(carol.client)
    membership = Membership.objects.get(user=carol.user)
    alice.client.post(reverse("accounts:member_role", args=[membership.public_id]), {"role": Role.MEMBER})
    assert Membership.objects.get(user=carol.user).role == Role.MEMBER
    response, count = queries_of(lambda: poll(carol.client, etag))
    assert response.status_code == 304 and count > 1
    response, count = queries_of(lambda: poll(carol.client, etag))
    assert (response.status_code, count) == (304, 1)


def test_a_session_expiring_with_nothing_written_is_refused(alice, board, clock):
    """Time alone ends a session: no row changes, the pass must still not answer."""
    UserSession.objects.update(expire_date=clock.at + timedelta(seconds=20))
    etag = passed(alice.client)
    clock.at += timedelta(seconds=21)  # the same minute
    refused(poll(alice.client, etag), to=login_url())


def test_a_pass_outliving_its_session_row_answers_nothing(alice, board, clock):
    etag = passed(alice.client)
    end_sessions(user=alice.user)
    refused(poll(alice.client, etag), to=login_url())
    assert cache.get(dashboard_poll._key(session_key(alice.client))) is None  # and it is dropped


# Half-signed-in and fixed sessions


def test_a_session_at_the_code_step_gets_nothing_while_another_holds_a_pass(alice, board, clock):
    etag = passed(alice.client)
    half = Client()
    assert half.post(reverse("accounts:login"), {"email": alice.user.email, "password": PASSWORD}).status_code == 302
    refused(poll(half, etag), to=reverse("accounts:login_otp"))
    refused(poll(half, "*"), to=reverse("accounts:login_otp"))
    half.post(reverse("accounts:login_otp"), {"token": totp_code(alice.device)})
    assert poll(half, etag).status_code == 304  # once both factors are given


def test_a_session_fixed_before_login_is_not_the_one_signed_in(alice, board, clock):
    """An attacker who planted a session cookie before the login gets
    nothing: the login cycles the key (and the pass is per key)."""
    planted = PlainStore()
    planted["planted"] = True
    planted.create()
    victim = with_cookie(planted.session_key)
    victim.post(reverse("accounts:login"), {"email": alice.user.email, "password": PASSWORD})
    victim.post(reverse("accounts:login_otp"), {"token": totp_code(alice.device)})
    etag = passed(victim)
    assert session_key(victim) != planted.session_key
    refused(poll(with_cookie(planted.session_key), etag), to=login_url())


# Cookies that are not a signed-in session


@pytest.mark.parametrize(
    "forge",
    [
        lambda key: "a" * 32,
        lambda key: key.upper(),
        lambda key: key + "x",
        lambda key: key[:-1],
        lambda key: "x" * 5000,
        lambda key: "' OR 1=1 --",
        lambda key: "%",
    ],
    ids=["unknown", "upper-case", "longer", "shorter", "huge", "sql", "like-wildcard"],
)
def test_a_forged_cookie_gets_the_login_page(alice, board, clock, forge):
    etag = passed(alice.client)
    forged = with_cookie(forge(session_key(alice.client)))
    refused(poll(forged, etag), to=login_url())
    refused(poll(forged, "*"), to=login_url())


def test_another_organisations_session_never_gets_this_ones_304(alice, charlie, tenant_b, board, clock):
    etag = passed(alice.client)
    running_mailing(tenant_b, [make_server(tenant_b, name="Theirs")], queued=1, name="Globex news")
    passed(charlie.client)
    theirs = poll(charlie.client, etag)
    assert theirs.status_code == 200 and theirs["ETag"] != etag
    assert [m["name"] for m in theirs.json()["mailings"]] == ["Globex news"]


def test_two_empty_organisations_have_different_stamps(db, clock):
    """Nothing shown in either: the stamps still differ, so one's ETag
    never answers the other."""
    first = make_person("one@one.test", Tenant.objects.create(name="One", slug="one"))
    second = make_person("two@two.test", Tenant.objects.create(name="Two", slug="two"))
    etag = passed(first.client)
    assert poll(second.client, etag).status_code == 200


# Methods, paths, conditional headers and the Host


def test_head_and_post_never_use_the_pass(alice, board, clock):
    etag = passed(alice.client)
    head, count = queries_of(lambda: alice.client.head(reverse(DATA), HTTP_IF_NONE_MATCH=etag))
    assert head.status_code == 304 and count > 1
    strict = same_session(alice)
    strict.handler.enforce_csrf_checks = True
    posted, count = queries_of(lambda: strict.post(reverse(DATA), HTTP_IF_NONE_MATCH=etag))
    assert posted.status_code == 403 and count > 1  # the CSRF check, as the whole way has it
    end_sessions(user=alice.user)
    refused(alice.client.head(reverse(DATA), HTTP_IF_NONE_MATCH=etag), to=login_url())


@pytest.mark.parametrize(
    "path",
    ["/dashboard/data.json/", "/DASHBOARD/DATA.JSON", "/Dashboard/data.json", "//dashboard/data.json",
     "/dashboard/data%2Ejson", "/dashboard/./data.json", "/dashboard/data.json?x=1", "/dashboard/data.json;x"],
)  # fmt: skip
def test_a_variant_of_the_path_is_refused_after_revocation(alice, board, clock, path):
    etag = passed(alice.client)
    end_sessions(user=alice.user)
    response = poll(alice.client, etag, path=path)
    assert response.status_code in (302, 404) and "ETag" not in response and response.status_code != 304


@pytest.mark.parametrize(
    "header",
    ["{etag}", "*", "W/{etag}", '"nope", {etag}', '"nope"', "{etag}, {etag}", "W/*", "", "garbage"],
)
def test_conditional_headers_are_answered_as_the_whole_way_does(alice, board, clock, header):
    etag = poll(alice.client)["ETag"]
    value = header.format(etag=etag)
    cache.clear()
    whole_way = poll(alice.client, value)
    from_pass, count = queries_of(lambda: poll(alice.client, value))
    assert count == 1 or from_pass.status_code == 200  # from the pass (a 200 builds the JSON too)
    assert from_pass.status_code == whole_way.status_code
    assert from_pass.get("ETag") == whole_way.get("ETag")
    end_sessions(user=alice.user)
    refused(poll(alice.client, value), to=login_url())


def test_a_host_not_allowed_is_refused_as_the_whole_way_refuses_it(alice, board, clock):
    """CommonMiddleware, which the fast path skips, is where the whole way
    checks ALLOWED_HOSTS: a poll with a pass must not be the one request a
    foreign Host (DNS rebinding, a poisoned proxy) gets an answer to."""
    etag = passed(alice.client)
    cache.clear()
    assert poll(alice.client, etag, HTTP_HOST="evil.example").status_code == 400  # the whole way
    passed(alice.client)
    from_pass = poll(alice.client, etag, HTTP_HOST="evil.example")
    assert from_pass.status_code == 400 and "ETag" not in from_pass
    assert poll(alice.client, etag, HTTP_X_FORWARDED_HOST="evil.example").status_code == 304  # not trusted: ignored


# Language and time zone


def _in(client: Client, etag: str | None = None, **headers) -> tuple[int, str, str]:
    response = poll(client, etag, **headers)
    label = response.json()["checklist"]["label"] if response.status_code == 200 else ""
    return response.status_code, response["Content-Language"], label


def test_accept_language_changing_between_polls_is_answered_in_the_new_one(alice, board, clock):
    etag = passed(alice.client, HTTP_ACCEPT_LANGUAGE="ru")
    status, language, label = _in(alice.client, etag, HTTP_ACCEPT_LANGUAGE="vi")
    cache.clear()
    assert (status, language, label) == _in(alice.client, HTTP_ACCEPT_LANGUAGE="vi")  # the whole way's
    assert status == 200 and language == "vi"
    assert label != _in(alice.client, HTTP_ACCEPT_LANGUAGE="ru")[2]


def test_a_language_cookie_changed_by_hand_is_answered_in_its_language(alice, board, clock):
    cookie = django_settings.LANGUAGE_COOKIE_NAME
    alice.client.cookies[cookie] = "ru"
    etag = passed(alice.client)
    alice.client.cookies[cookie] = "vi"
    status, language, _ = _in(alice.client, etag)
    assert (status, language) == (200, "vi")
    alice.client.cookies[cookie] = "ru"
    assert poll(alice.client, etag).status_code == 304


def test_a_language_saved_in_another_tab_changes_the_next_poll(alice, board, clock):
    other = second_session(alice)
    etag = passed(other)
    alice.client.post(reverse("accounts:language_set"), {"language": "ru"})
    response = poll(other, etag)
    assert response.status_code == 200 and response["Content-Language"] == "ru"
    assert response.cookies[django_settings.LANGUAGE_COOKIE_NAME].value == "ru"


def test_the_organisations_new_language_is_the_next_polls(alice, bob, board, clock):
    etag = passed(bob.client)
    alice.client.post(reverse("accounts:tenant_language"), {"language": "vi"})
    status, language, _ = _in(bob.client, etag)
    assert (status, language) == (200, "vi")


def test_the_organisations_new_time_zone_is_the_next_polls(alice, tenant_a, board, clock):
    etag = passed(alice.client)
    before = poll(alice.client)  # a 200 in the old zone
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Asia/Ho_Chi_Minh")
    after = poll(alice.client, etag)
    assert after.status_code == 200 and after["ETag"] != etag
    assert after.json()["updated"].split()[1] != before.json()["updated"].split()[1]
    assert after.json()["updated"].split()[1] == "UTC+7"


# The cache: what a client may put in it, and what a planted pass can do


def _cache_bytes() -> list[bytes]:
    """Every key and value the cache holds, as bytes."""
    backend = cache._cache
    if hasattr(backend, "get_client"):  # Redis
        client = backend.get_client()
        keys = client.keys("*")
        return [*keys, *(client.get(key) or b"" for key in keys)]
    return [*(key.encode() for key in backend), *backend.values()]


def test_the_cache_never_holds_a_session_key(alice, bob, board, clock):
    passed(alice.client)
    passed(bob.client)
    held = b"".join(_cache_bytes())
    assert b"dashboard-poll" in held
    for client in (alice.client, bob.client):
        assert session_key(client).encode() not in held


def test_another_sessions_pass_planted_under_this_key_answers_nothing(alice, charlie, board, clock):
    """Someone who could write the cache: charlie's pass under alice's key."""
    passed(charlie.client)
    charlies = cache.get(dashboard_poll._key(session_key(charlie.client)))
    assert isinstance(charlies, dashboard_poll.Pass)
    cache.set(dashboard_poll._key(session_key(alice.client)), charlies)
    response, count = queries_of(lambda: poll(alice.client))
    assert response.status_code == 200 and count > 1
    assert [m["name"] for m in response.json()["mailings"]] == ["Spring sale"]


def test_a_pass_naming_an_organisation_not_the_users_answers_nothing(alice, tenant_b, board, clock):
    passed(alice.client)
    key = dashboard_poll._key(session_key(alice.client))
    own = cache.get(key)
    cache.set(key, dashboard_poll.Pass(own.versions, tenant_b, own.language))
    running_mailing(tenant_b, [make_server(tenant_b, name="Theirs")], queued=1, name="Globex news")
    response = poll(alice.client)
    assert [m["name"] for m in response.json()["mailings"]] == ["Spring sale"]


@pytest.mark.parametrize("garbage", ["a string", b"\x80\x04junk", {"versions": "x"}, 0])
def test_garbage_in_the_cache_sends_the_poll_the_whole_way(alice, board, clock, garbage):
    etag = passed(alice.client)
    cache.set(dashboard_poll._key(session_key(alice.client)), garbage)
    assert poll(alice.client, etag).status_code == 304
    end_sessions(user=alice.user)
    cache.set(dashboard_poll._key(session_key(alice.client)), garbage)
    refused(poll(alice.client, etag), to=login_url())


# Row versions: a write of the same values moves them, a lock does not


def test_a_write_of_the_same_values_still_sends_the_poll_the_whole_way(alice, board, clock):
    etag = passed(alice.client)
    UserSession.objects.filter(session_key=session_key(alice.client)).update(session_data=F("session_data"))
    response, count = queries_of(lambda: poll(alice.client, etag))
    assert response.status_code == 304 and count > 1


def test_a_row_locked_but_not_written_keeps_the_pass(alice, board, clock):
    etag = passed(alice.client)
    list(UserSession.objects.select_for_update().filter(session_key=session_key(alice.client)))
    response, count = queries_of(lambda: poll(alice.client, etag))
    assert (response.status_code, count) == (304, 1)


def test_a_session_saved_by_the_engine_with_other_data_moves_its_version(alice, board, clock):
    etag = passed(alice.client)
    store = SessionStore(session_key(alice.client))
    store[DEVICE_ID_SESSION_KEY] = "otp_totp.totpdevice/0"  # a device that is not theirs
    store.save()
    refused(poll(alice.client, etag), to=reverse("accounts:login_otp"))


# Headers


def test_the_security_headers_of_an_answer_from_a_pass_are_the_whole_ways(alice, board, clock, settings):
    """Over HTTPS with HSTS on, a language cookie and Accept-Language that
    disagree: a 304 and a 200, each from the whole way and from a pass."""
    settings.SECURE_HSTS_SECONDS = 31536000
    alice.client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "vi"
    headers = {"secure": True, "HTTP_ACCEPT_LANGUAGE": "ru"}
    etag = poll(alice.client, **headers)["ETag"]
    cache.clear()
    pairs = [poll(alice.client, etag, **headers)]
    pairs.append(_from_pass(lambda: poll(alice.client, etag, **headers)))
    board.letters.filter(status="queued").update(status="failed")
    cache.clear()
    whole_way = poll(alice.client, etag, **headers)
    board.letters.filter(status="failed").update(status="bounced")
    pairs += [whole_way, _from_pass(lambda: poll(alice.client, whole_way["ETag"], **headers))]
    assert [r.status_code for r in pairs] == [304, 304, 200, 200]
    for whole_way, from_pass in (pairs[:2], pairs[2:]):
        assert _security(from_pass) == _security(whole_way)
        for name in ("Content-Security-Policy", "X-Frame-Options", "Strict-Transport-Security",
                     "X-Content-Type-Options", "Referrer-Policy"):  # fmt: skip
            assert from_pass.has_header(name), name
        assert "no-store" in from_pass["Cache-Control"] and "private" in from_pass["Cache-Control"]
        assert {"Cookie", "Accept-Language"} <= {v.strip() for v in from_pass["Vary"].split(",")}
        assert from_pass["Content-Language"] == "vi"


def _from_pass(call):
    response, count = queries_of(call)
    assert count == 1 or response.status_code == 200  # a 200 from a pass also builds the JSON
    return response


def _security(response) -> dict[str, str]:
    moving = {"ETag", "Expires", "Content-Length", django_settings.REQUEST_ID_HEADER}
    return {name: value for name, value in response.headers.items() if name not in moving}


# Races: a revocation committed from another connection while a poll runs


@pytest.fixture
def committed_rows(transactional_db):
    """The fixtures' rows committed, so that a second connection sees
    (and changes) them."""


def _from_another_connection(sql: str, params: list) -> None:
    """Run and commit `sql` on a second PostgreSQL connection, in a thread
    (as another web worker would)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with other_session() as session:
                session.execute(sql, params)
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and not errors, errors


def test_a_suspension_committed_while_the_stack_lets_the_poll_through_is_not_kept(
    committed_rows, alice, tenant_a, board, clock, monkeypatch
):
    """The stack decided before the suspension; the pass it leaves holds the
    versions read before the stack, so the next poll sees the change."""
    remember = dashboard_poll.remember

    def suspended_meanwhile(request) -> None:
        _from_another_connection("UPDATE accounts_tenant SET status = %s WHERE id = %s", ["suspended", tenant_a.pk])
        remember(request)

    monkeypatch.setattr(dashboard_poll, "remember", suspended_meanwhile)
    assert poll(alice.client).status_code == 200  # let through before the suspension
    monkeypatch.setattr(dashboard_poll, "remember", remember)
    refused(poll(alice.client), status=403)
    refused(poll(alice.client, "*"), status=403)


def test_a_removal_committed_after_the_versions_are_read_answers_once_then_refuses(
    committed_rows, alice, bob, board, clock, monkeypatch
):
    """The poll in flight answers as of the versions it read (as the whole
    way answers as of its checks); the next poll is refused."""
    etag = passed(bob.client)
    answer = dashboard_views.answer_poll
    fired = []

    def removed_meanwhile(request, tenant, stamp):
        if not fired:
            fired.append(True)
            _from_another_connection("DELETE FROM accounts_membership WHERE user_id = %s", [bob.user.pk])
        return answer(request, tenant, stamp)

    monkeypatch.setattr(dashboard_views, "answer_poll", removed_meanwhile)
    assert poll(bob.client, etag).status_code == 304
    assert fired
    refused(poll(bob.client, etag), to=reverse("accounts:tenant_new"))


def test_an_uncommitted_deactivation_neither_blocks_nor_is_missed(committed_rows, alice, board, clock):
    etag = passed(alice.client)
    with other_session() as session:
        session.autocommit = False
        session.execute("UPDATE accounts_user SET is_active = false WHERE id = %s", [alice.user.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        try:
            response, count = queries_of(lambda: poll(alice.client, etag))
            assert (response.status_code, count) == (304, 1)  # the committed row is still the active one
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        session.commit()
    refused(poll(alice.client, etag), to=login_url())
