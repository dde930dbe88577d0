"""The dashboard's poll answered from a pass (mailing.dashboard.poll): one
query while nothing the request stack checked has changed, and the whole
stack, which refuses, on the very next poll after any of those changes,
with a cache shared by every process (Redis) as with one per process."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.middleware import SESSION_TENANT_KEY
from accounts.models import Membership, Role, Tenant, UserSession
from accounts.sessions import end_sessions
from mailing.dashboard.stamp import STAMP_SQL
from tests.conftest import make_person
from tests.mailing.poll_fixtures import _postgresql, shared_or_not  # noqa: F401 (fixtures that apply themselves)
from tests.servers.factories import make_server

from .dashboard_builders import running_mailing

DATA = "dashboard:data"


@pytest.fixture
def still_minute(monkeypatch):
    at = timezone.now().replace(second=30)
    monkeypatch.setattr(timezone, "now", lambda: at)


@pytest.fixture
def board(tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=100)
    return running_mailing(tenant_a, [server], queued=3, name="Spring sale")


def poll(client, etag: str | None = None):
    return client.get(reverse(DATA), **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))


def passed(client, django_assert_num_queries) -> str:
    """Two polls: the whole way (leaving a pass), then one query; the ETag."""
    etag = poll(client)["ETag"]
    with django_assert_num_queries(1):
        assert poll(client, etag).status_code == 304
    return etag


def same_session(person) -> Client:
    """Another browser with the person's session cookie (a stolen one)."""
    other = Client()
    name = django_settings.SESSION_COOKIE_NAME
    other.cookies[name] = person.client.cookies[name].value
    return other


def function_text(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef(%s::regproc)", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_device_tables_are_django_otps():
    versions = function_text("postroute_poll_versions")
    assert "FROM otp_totp_totpdevice d" in versions and TOTPDevice._meta.db_table == "otp_totp_totpdevice"
    assert "FROM otp_static_staticdevice d" in versions and StaticDevice._meta.db_table == "otp_static_staticdevice"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["postroute_poll_versions", "postroute_dashboard_stamp"])
def test_the_polls_statements_are_planned_once_a_session(name):
    """Each function runs with a generic plan (made once a session and kept)
    that reads tables by their indexes, and its settings hold only while it
    runs: the session's own are untouched."""
    text = function_text(name)
    assert "SET plan_cache_mode TO 'force_generic_plan'" in text and "SET enable_seqscan TO 'off'" in text
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')")
        before = cursor.fetchone()
        cursor.execute(STAMP_SQL, [None, 1, False, timezone.now(), timezone.now()])
        cursor.execute("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')")
        assert cursor.fetchone() == before == ("auto", "on")


def test_a_changed_poll_with_a_pass_builds_the_json_for_its_own_tenant(
    alice, board, still_minute, django_assert_num_queries
):
    etag = passed(alice.client, django_assert_num_queries)
    board.letters.filter(status="queued").update(status="failed")  # the stamp moves
    response = poll(alice.client, etag)
    assert response.status_code == 200 and response["ETag"] != etag
    assert [m["name"] for m in response.json()["mailings"]] == ["Spring sale"]


def test_ending_the_users_sessions_refuses_the_very_next_poll(alice, board, still_minute, django_assert_num_queries):
    """What a password change, a two-factor reset and staff do."""
    etag = passed(alice.client, django_assert_num_queries)
    end_sessions(user=alice.user)
    assert poll(alice.client, etag).status_code == 302
    assert poll(alice.client).status_code == 302


def test_logging_out_refuses_the_same_cookie_elsewhere(alice, board, still_minute, django_assert_num_queries):
    stolen = same_session(alice)
    etag = passed(stolen, django_assert_num_queries)
    alice.client.post(reverse("accounts:logout"))
    assert not UserSession.objects.exists()
    assert poll(stolen, etag).status_code == 302


def test_an_expired_session_is_refused(alice, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    UserSession.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert poll(alice.client, etag).status_code == 302


def test_a_deactivated_user_is_refused(alice, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])
    assert poll(alice.client, etag).status_code == 302


def test_a_removed_second_factor_sends_the_next_poll_to_enrol(alice, board, still_minute, django_assert_num_queries):
    """Staff reset two-factor login (the sessions end too); here only the
    device goes, so the gate, not the session, refuses."""
    etag = passed(alice.client, django_assert_num_queries)
    TOTPDevice.objects.filter(user=alice.user).delete()
    response = poll(alice.client, etag)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:2fa_setup")


def test_a_suspended_organisation_is_refused(alice, tenant_a, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    services.tenant_suspend(tenant=tenant_a, reason="unpaid")
    assert poll(alice.client, etag).status_code == 403


def test_a_removed_member_no_longer_sees_the_organisation(
    alice, bob, tenant_a, board, still_minute, django_assert_num_queries
):
    etag = passed(bob.client, django_assert_num_queries)
    Membership.objects.filter(user=bob.user).delete()
    response = poll(bob.client, etag)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:tenant_new")


def test_switching_organisation_shows_the_other_one_at_once(
    alice, tenant_a, tenant_b, board, still_minute, django_assert_num_queries
):
    Membership.objects.create(user=alice.user, tenant=tenant_b, role=Role.OWNER)
    running_mailing(tenant_b, [make_server(tenant_b, name="Theirs")], queued=1, name="Globex news")
    session = alice.client.session
    session[SESSION_TENANT_KEY] = str(tenant_a.public_id)
    session.save()
    etag = passed(alice.client, django_assert_num_queries)
    alice.client.post(reverse("accounts:tenant_switch"), {"tenant": str(tenant_b.public_id)})
    response = poll(alice.client, etag)
    assert response.status_code == 200 and [m["name"] for m in response.json()["mailings"]] == ["Globex news"]


def test_another_tenants_stamp_and_pass_never_answer(alice, charlie, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    passed(charlie.client, django_assert_num_queries)
    theirs = poll(charlie.client, etag)
    assert theirs.status_code == 200 and "Spring sale" not in theirs.content.decode()


def test_a_member_added_elsewhere_keeps_the_answer_right(alice, board, still_minute, django_assert_num_queries):
    """Any change to the user's memberships sends the poll the whole way once."""
    etag = passed(alice.client, django_assert_num_queries)
    Membership.objects.create(user=alice.user, tenant=Tenant.objects.create(name="New", slug="new"), role=Role.OWNER)
    with django_assert_num_queries(5):  # the versions and the stamp, then the stack's four
        assert poll(alice.client, etag).status_code == 304
    with django_assert_num_queries(1):
        assert poll(alice.client, etag).status_code == 304


def test_the_answer_from_a_pass_has_the_whole_ways_headers(alice, board, still_minute, django_assert_num_queries):
    etag = poll(alice.client)["ETag"]
    cache.clear()
    whole_way = poll(alice.client, etag)
    with django_assert_num_queries(1):
        from_pass = poll(alice.client, etag)
    assert whole_way.status_code == from_pass.status_code == 304
    assert _headers(from_pass) == _headers(whole_way)

    board.letters.filter(status="queued").update(status="failed")
    cache.clear()
    whole_way = poll(alice.client, etag)
    board.letters.filter(status="failed").update(status="bounced")
    from_pass = poll(alice.client, whole_way["ETag"])
    assert whole_way.status_code == from_pass.status_code == 200
    assert _headers(from_pass) == _headers(whole_way)


def _headers(response) -> dict[str, str]:
    moving = {"ETag", "Expires", "Content-Length", django_settings.REQUEST_ID_HEADER}
    return {name: value for name, value in response.headers.items() if name not in moving}


def test_a_language_cookie_out_of_step_goes_the_whole_way_and_is_set(
    alice, board, still_minute, django_assert_num_queries
):
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    passed(alice.client, django_assert_num_queries)
    alice.client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "vi"
    response = poll(alice.client)
    assert response.cookies[django_settings.LANGUAGE_COOKIE_NAME].value == "ru"
    assert response["Content-Language"] == "ru"


def test_a_person_with_another_language_gets_their_own_stamp(alice, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    other = make_person("dave@acme.test", Tenant.objects.get(slug="acme"))
    other.user.language = "vi"
    other.user.save(update_fields=["language"])
    passed(other.client, django_assert_num_queries)
    response = poll(other.client, etag)
    assert response.status_code == 200 and response["Content-Language"] == "vi"


def test_a_cache_that_does_not_answer_sends_every_poll_the_whole_way(alice, board, still_minute, caplog):
    gone = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(CACHES={"default": gone}):
        etag = poll(alice.client)["ETag"]
        assert poll(alice.client, etag).status_code == 304
        end_sessions(user=alice.user)
        assert poll(alice.client, etag).status_code == 302
    assert "the cache did not answer" in caplog.text


def test_a_new_secret_key_ends_passes_as_it_ends_sessions(alice, board, still_minute, django_assert_num_queries):
    etag = passed(alice.client, django_assert_num_queries)
    with override_settings(SECRET_KEY="another-" + "k" * 50):
        assert poll(alice.client, etag).status_code == 302
