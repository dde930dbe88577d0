"""The web answers /metrics with the counts of every process that shares
its PROMETHEUS_MULTIPROC_DIR: in compose, each process is a container, so
the folder must be one volume shared by the web and the workers (else the
letters, counted where they are sent, never reach a scrape), and the files
must be told apart by host as well as pid (every container's first process
is pid 1, and two processes writing one file corrupt each other's counts)."""

import socket
import subprocess
import sys

import yaml

from tests.helpers import ROOT
from tests.ops.test_deploy_recipe import DEPLOY

COUNT = """
from config import metrics
metrics.letter_result("sent", server_id=None)
"""


def test_compose_shares_one_metrics_folder_between_the_web_and_the_workers():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "PROMETHEUS_MULTIPROC_DIR=/run/postroute-metrics" in dockerfile
    for name, service in compose["services"].items():
        if name.startswith(("web", "worker-")):
            mounts = [str(volume).split(":") for volume in service.get("volumes", [])]
            assert ["metrics", "/run/postroute-metrics"] in mounts, name


def test_each_process_writes_files_of_its_own_host_and_pid(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings_test", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", COUNT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names and all(socket.gethostname() in name for name in names), names
