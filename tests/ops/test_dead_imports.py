"""An import whose worker died (killed, out of memory) does not stay
"importing" for ever: its runner holds an advisory lock while it lives, and
beat's sweep fails a running import whose lock it can take, naming the way
out (upload again; contacts already in are merged)."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mailing.imports import limits, services
from mailing.imports import runner as import_runner
from mailing.models import ContactImport
from tests.services import other_session, require_postgresql

pytestmark = pytest.mark.django_db
S = ContactImport.Status


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path):
    require_postgresql()
    settings.IMPORTS_DIR = tmp_path / "imports"


def queued(tenant) -> ContactImport:
    """Mapped and queued; its task (on commit) never runs here."""
    upload = SimpleUploadedFile("people.csv", b"email\nann@x.test\nbob@x.test\n", "text/csv")
    imp = services.import_upload(tenant=tenant, by=None, upload=upload)
    services.import_start(contact_import=imp, columns={0: "email"}, contact_list=None, new_list_name="People")
    return imp


def runner_lock(session, imp: ContactImport) -> None:
    session.execute("SELECT pg_advisory_lock(%s, %s)", [import_runner.LOCK_NAMESPACE, imp.pk])


def die(session, imp: ContactImport) -> None:
    """The runner's connection ends; PostgreSQL drops its locks a moment later."""
    session.close()
    probe = other_session()
    try:
        for _ in range(100):
            row = probe.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                [import_runner.LOCK_NAMESPACE, imp.pk],
            ).fetchone()
            if row == (0,):
                return
            time.sleep(0.02)
    finally:
        probe.close()
    raise AssertionError("the lock outlived its session")


def test_a_running_import_with_a_live_runner_is_left_alone_and_a_dead_ones_fails(tenant_a):
    imp = queued(tenant_a)
    ContactImport.objects.filter(pk=imp.pk).update(status=S.RUNNING)
    runner = other_session()
    runner_lock(runner, imp)  # a worker busy with it
    assert import_runner.imports_fail_dead() == 0
    assert ContactImport.objects.get(pk=imp.pk).status == S.RUNNING
    die(runner, imp)  # the worker died: its connection, and the lock, are gone
    assert import_runner.imports_fail_dead() == 1
    imp.refresh_from_db()
    assert imp.status == S.FAILED and imp.error == import_runner.DEAD_RUNNER and imp.finished_at
    assert not (limits.imports_dir() / imp.file_path.rsplit("/", 1)[-1]).exists()


def test_a_second_runner_does_not_start_while_the_first_lives_and_the_lock_is_let_go(tenant_a):
    imp = queued(tenant_a)
    runner = other_session()
    runner_lock(runner, imp)
    import_runner.import_run(import_id=imp.pk)
    assert ContactImport.objects.get(pk=imp.pk).status == S.QUEUED  # untouched
    die(runner, imp)
    import_runner.import_run(import_id=imp.pk)
    imp.refresh_from_db()
    assert imp.status == S.DONE and imp.created == 2
    probe = other_session()  # the finished runner let its lock go
    taken = probe.execute("SELECT pg_try_advisory_lock(%s, %s)", [import_runner.LOCK_NAMESPACE, imp.pk]).fetchone()
    probe.close()
    assert taken == (True,)
