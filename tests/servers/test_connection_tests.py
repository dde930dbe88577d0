"""A connection test always ends: passed or failed, never running forever,
even when the worker's time limit stops it or the worker is killed."""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from servers import probes, services
from servers.models import ConnectionTest, Health
from servers.tasks import fail_stale_connection_tests

from .factories import make_server

pytestmark = pytest.mark.django_db
S = ConnectionTest.Status


def run_test(tenant, server, capture) -> ConnectionTest:
    with capture(execute=True):  # the task, as a worker runs it
        test = services.connection_test_start(tenant=tenant, server=server)
    test.refresh_from_db()
    return test


def stopped(*args, **kwargs):
    raise SoftTimeLimitExceeded()


def test_the_soft_limit_in_the_middle_of_a_step_fails_the_test_with_a_timeout(
    tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    server = make_server(tenant_a)
    monkeypatch.setattr(probes, "open_smtp", stopped)

    test = run_test(tenant_a, server, django_capture_on_commit_callbacks)

    assert (test.status, test.category) == (S.FAILED, "timeout")
    assert "took longer than the worker allows" in test.error and test.finished_at
    server.refresh_from_db()
    assert server.health == Health.FAILING


def test_the_soft_limit_outside_the_probe_still_fails_the_test(
    tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(probes, "smtp_probe", stopped)

    test = run_test(tenant_a, make_server(tenant_a), django_capture_on_commit_callbacks)

    assert (test.status, test.category) == (S.FAILED, "timeout") and test.finished_at


def test_a_test_whose_worker_was_killed_ends_failed_a_few_minutes_later(tenant_a):
    server = make_server(tenant_a)
    old = timezone.now() - services.STALE_TEST_AFTER - timedelta(seconds=1)
    killed = ConnectionTest.objects.create(tenant=tenant_a, server=server, status=S.RUNNING, created_at=old)
    never_taken = ConnectionTest.objects.create(tenant=tenant_a, server=server, created_at=old)
    running = ConnectionTest.objects.create(tenant=tenant_a, server=server, status=S.RUNNING)
    passed = ConnectionTest.objects.create(tenant=tenant_a, server=server, status=S.PASSED, created_at=old)

    fail_stale_connection_tests()

    statuses = {t.pk: t.status for t in ConnectionTest.objects.all()}
    assert statuses == {killed.pk: S.FAILED, never_taken.pk: S.FAILED, running.pk: S.RUNNING, passed.pk: S.PASSED}
    killed.refresh_from_db()
    assert killed.error and killed.finished_at


@pytest.mark.parametrize(
    ("language", "refused"), [("en", "nothing accepts connections"), ("ru", "никто не принимает подключения")]
)
def test_what_a_test_stores_is_in_the_organisations_language(
    tenant_a, django_capture_on_commit_callbacks, language, refused
):
    """The steps, the error and the hint are read later by everyone in the
    organisation: they are written in its language, not the worker's."""
    from tests.helpers import free_port

    tenant_a.default_language = language
    tenant_a.save(update_fields=["default_language"])
    server = make_server(tenant_a, port=free_port())  # nothing listens there
    test = run_test(tenant_a, server, django_capture_on_commit_callbacks)
    assert test.status == S.FAILED
    written = " ".join([test.error, test.hint, *(str(step) for step in test.steps)]).lower()
    assert refused in written, written
    server.refresh_from_db()
    assert refused in (server.health_error + server.health_hint).lower()


def test_a_servers_words_holding_a_nul_byte_are_stored_with_the_tests_steps(
    tenant_a, django_capture_on_commit_callbacks
):
    """The steps are jsonb, which holds no NUL: a server that says one in
    its EHLO reply gets its test finished and stored, U+FFFD in its place
    (before, the test stayed running until it was called stale)."""
    from mailing.sink import SinkHandler
    from tests.smtp_servers import smtp_server

    class NulEhlo(SinkHandler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [responses[0] + "\x00", *responses[1:]]

    server = make_server(tenant_a)
    with smtp_server(handler=NulEhlo()) as (controller, _):
        server.port = controller.port
        server.save(update_fields=["port"])
        test = run_test(tenant_a, server, django_capture_on_commit_callbacks)
    assert test.status == S.PASSED, test.error
    assert any(step["detail"].endswith("\ufffd") for step in test.steps)
