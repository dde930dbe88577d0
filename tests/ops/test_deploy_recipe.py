"""deploy/ is a recipe that holds together: systemd accepts the units (with
the paths of this checkout), every queue the product routes to has a worker
in both the units and compose.yaml, both run the same command lines, one
beat each, and the image installs only what production runs."""

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config.health import queues
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
UNITS = [*sorted((DEPLOY / "systemd").glob("postroute*.service")), DEPLOY / "systemd" / "postroute.target"]
INSTALL = "/opt/postroute"


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def exec_starts() -> dict[str, str]:
    """Each long-running unit's command, as a line of words without the venv's path."""
    commands = {}
    for path in UNITS:
        if path.suffix == ".service" and path.stem != "postroute-release":
            line = unit(path)["Service"]["ExecStart"]
            commands[path.stem.removeprefix("postroute-")] = line.replace(f"{INSTALL}/.venv/bin/", "")
    return commands


def environment(name: str) -> dict[str, str]:
    """The Environment= lines of postroute-<name>.service."""
    text = (DEPLOY / "systemd" / f"postroute-{name}.service").read_text()
    return dict(line.split("=", 1) for line in re.findall(r"^Environment=(.*)$", text, re.M))


def consumed(command: str) -> list[str]:
    found = re.search(r"-Q (\S+)", command)
    return found.group(1).split(",") if found else []


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for path in UNITS:
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALL, str(ROOT)))
    files = [str(tmp_path / p.name) for p in UNITS]
    result = subprocess.run([analyze, "verify", "--man=no", *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # The check can fail: a unit whose program is missing is refused.
    broken = tmp_path / "postroute-web.service"
    broken.write_text(broken.read_text().replace(".venv/bin/gunicorn", ".venv/bin/no-such-gunicorn"))
    result = subprocess.run([analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert "no-such-gunicorn" in result.stderr


def test_every_queue_has_exactly_one_worker_group_and_there_is_one_beat():
    commands = exec_starts()
    served = [q for c in commands.values() for q in consumed(c)]
    assert sorted(served) == queues()
    assert [name for name, c in commands.items() if " beat" in c] == ["beat"]
    assert commands["web"].startswith("gunicorn config.wsgi")
    target = unit(DEPLOY / "systemd" / "postroute.target")["Unit"]["Wants"].split()
    assert sorted(target) == sorted(p.name for p in UNITS if p.suffix == ".service")


def test_compose_runs_the_same_processes_as_the_units():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "beat", "release"} <= set(services)
    for name, command in exec_starts().items():
        assert " ".join(services[name]["command"]).replace("%h", "%H") == command, name
        if "DB_POOL_SIZE" in environment(name):
            assert services[name]["environment"]["DB_POOL_SIZE"] == environment(name)["DB_POOL_SIZE"]
            assert services[name]["environment"]["DATABASE_URL"] == services["web"]["environment"]["DATABASE_URL"]
    assert "check --deploy" in " ".join(services["release"]["command"])


def test_the_image_installs_what_production_runs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile and "requirements-dev" not in dockerfile
    runtime = (ROOT / "requirements.txt").read_text().lower()
    # (PyYAML is a runtime package since the API: drf-spectacular writes the schema in YAML.)
    for tool in ("pytest", "ruff", "playwright", "honcho"):
        assert f"\n{tool}" not in runtime, tool
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert dev.splitlines()[1] == "-r requirements.txt"
    for line in (ROOT / "requirements.txt").read_text().splitlines() + dev.splitlines()[2:]:
        assert line.startswith("#") or "==" in line, line  # every package pinned


METRIC = re.compile(r"\b(postroute_[a-z_]+?)(?:_total|_bucket|_count|_sum)?\b")


def test_the_grafana_dashboard_asks_only_for_metrics_the_product_exports():
    from prometheus_client.metrics import MetricWrapperBase

    from config import metrics

    recorded = {v._name for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)}
    exported = recorded | set(metrics.StateCollector.NAMES)
    dashboard = json.loads((DEPLOY / "grafana" / "postroute.json").read_text())
    asked = {name for panel in dashboard["panels"] for t in panel["targets"] for name in METRIC.findall(t["expr"])}
    assert len(asked) >= 10 and asked <= exported, asked - exported
