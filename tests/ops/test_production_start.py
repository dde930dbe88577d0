"""With DEBUG off, a process that serves or works (gunicorn, a Celery worker,
beat) refuses to start when DATABASE_URL or CELERY_BROKER_URL is unset,
naming it, instead of falling back to SQLite and the filesystem broker
(config/production.py). Development (DEBUG=1) and `manage.py` commands are
unaffected; a URL given on purpose is the operator's choice."""

import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, free_port, manage, production_env

SQLITE = "sqlite:///{}/db.sqlite3"


def run_until_exit(argv: list[str], env: dict[str, str], seconds: float = 40) -> tuple[int | None, str]:
    """The process's exit code and output; None when it was still running
    after `seconds` (it started), and then it is stopped."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=seconds)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
        return None, output


def gunicorn() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{free_port()}", "-w", "1"]


CELERY = {
    "worker": [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "-c", "1", "-P", "solo"],
    "beat": [sys.executable, "-m", "celery", "-A", "config", "beat"],
}


@pytest.mark.parametrize("unset", ["DATABASE_URL", "CELERY_BROKER_URL"])
@pytest.mark.parametrize("process", ["gunicorn", "worker", "beat"])
def test_a_production_process_refuses_to_start_without_its_services(tmp_path, process, unset):
    given = {"DATABASE_URL": SQLITE.format(tmp_path), "CELERY_BROKER_URL": "filesystem://"}
    del given[unset]
    env = production_env(VAR_DIR=str(tmp_path), **given)
    argv = gunicorn() if process == "gunicorn" else CELERY[process]
    code, output = run_until_exit(argv, env)
    assert code not in (None, 0), output[-2000:]
    assert f"{unset} is not set" in output
    other = ({"DATABASE_URL", "CELERY_BROKER_URL"} - {unset}).pop()
    assert f"{other} is not set" not in output


def ticking(argv: list[str], env: dict[str, str], seconds: float = 40) -> tuple[bool, str]:
    """Whether beat, logging at DEBUG, got past its start (beat_init, where
    the refusal is) to its first tick's "Waking up" within `seconds`; then
    it is stopped. Its output is read on a thread, so a silent process
    cannot hold the test past `seconds`."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    woke = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Waking up" in line:
                woke.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        woke.wait(seconds)
    finally:
        proc.terminate()
        proc.wait(20)
        reader.join(5)
    return woke.is_set() and proc.returncode is not None, "".join(lines)


def test_development_and_explicit_urls_start(tmp_path):
    """make run's DEBUG=1 on the defaults, and DEBUG=0 with both URLs named
    (even the development ones), start and tick."""
    for variables in ({"DEBUG": "1"}, {"DATABASE_URL": SQLITE.format(tmp_path), "CELERY_BROKER_URL": "filesystem://"}):
        env = production_env(VAR_DIR=str(tmp_path), **variables)
        started, output = ticking([*CELERY["beat"], "-l", "debug"], env)
        assert started, output[-2000:]
        assert "is not set" not in output


def test_manage_py_still_runs_to_say_what_is_missing(tmp_path):
    result = manage("check", "--deploy", env=production_env(VAR_DIR=str(tmp_path)))
    assert result.returncode != 0 and "ops.E002" in result.stderr and "ops.E003" in result.stderr
