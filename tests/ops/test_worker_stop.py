"""Stopping a worker unit lets its running task finish, as the units
promise (TimeoutStopSec up to an hour for an import). systemd sends the
stop signal as the unit's KillMode says: by default (control-group) to
every process of the unit at once, and a prefork pool's child that gets
SIGTERM itself dies at once, its task lost (WorkerLostError: an import
starts again from the top, a bounce read or a connection test is cut).
Here a real Celery prefork worker on the test Redis gets the signal as
systemd would send it for each prefork unit."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.ops.test_deploy_recipe import DEPLOY, unit
from tests.services import require_redis

APP = """
import time
from pathlib import Path
from celery import Celery

app = Celery("napping", broker={broker!r})
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1
app.conf.task_default_queue = "postroute-stop-test"

@app.task
def nap(folder):
    Path(folder, "started").touch()
    time.sleep(4)
    Path(folder, "finished").touch()
"""


def prefork_units() -> list[Path]:
    units = []
    for path in sorted((DEPLOY / "systemd").glob("postroute-worker-*.service")):
        if "-P threads" not in unit(path)["Service"]["ExecStart"]:
            units.append(path)
    return units


def plain_env(folder: Path) -> dict[str, str]:
    """A Celery app of its own, without the product's Django settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    return {**env, "PYTHONPATH": str(folder)}


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("path", prefork_units(), ids=lambda p: p.stem)
def test_stopping_a_prefork_worker_unit_lets_its_task_finish(path, tmp_path):
    broker = require_redis()
    (tmp_path / "napping.py").write_text(APP.format(broker=broker))
    kill_mode = unit(path)["Service"].get("KillMode", "control-group")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "napping", "worker", "-c", "1", "--without-gossip",
         "--without-mingle", "--loglevel", "warning"],
        cwd=tmp_path, env=plain_env(tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        subprocess.run(
            [sys.executable, "-c", f"from napping import nap; nap.delay({str(tmp_path)!r})"],
            cwd=tmp_path, env=plain_env(tmp_path), check=True, timeout=30,
        )  # fmt: skip
        if not wait_for((tmp_path / "started").exists, 30):
            os.killpg(worker.pid, signal.SIGKILL)
            pytest.fail(f"the worker never started the task: {worker.communicate()[1][-3000:]}")
        if kill_mode == "control-group":
            os.killpg(worker.pid, signal.SIGTERM)  # every process of the unit
        else:
            assert kill_mode == "mixed"
            worker.send_signal(signal.SIGTERM)  # the main process; the rest only at TimeoutStopSec
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert (tmp_path / "finished").exists(), f"{path.name}: the running task was killed ({kill_mode})"


def seconds(text: str) -> int:
    """systemd's and compose's durations: 600, 10m, 1h, 90s."""
    number, unit_name = re.fullmatch(r"(\d+)([smh]?)", text.strip()).groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit_name]


def test_compose_waits_for_running_tasks_as_long_as_the_units():
    """docker stop waits 10 s unless told: a connection test, a platform
    letter or a webhook attempt would be cut where systemd waits."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for path in sorted((DEPLOY / "systemd").glob("postroute-worker-*.service")):
        name = path.stem.removeprefix("postroute-")
        waits = seconds(unit(path)["Service"]["TimeoutStopSec"])
        assert seconds(services[name].get("stop_grace_period", "10s")) >= waits, name
