"""A PostgreSQL that accepts the connection and then says nothing (a host
half-down, a failover in progress, a full backlog): /readyz must answer 503
within seconds, not wait with the web's workers until gunicorn kills them
(the load balancer would see time-outs, never the answer)."""

import json
import socket
import subprocess
import sys
import threading
import time

from tests.helpers import ROOT, production_env

READY = "import json; from config.health import readiness; print(json.dumps(readiness()))"


def silent_listener() -> tuple[socket.socket, list[socket.socket]]:
    """Accepts every connection and never writes a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_readyz_names_a_silent_database_within_seconds(tmp_path):
    server, held = silent_listener()
    port = server.getsockname()[1]
    env = production_env(DATABASE_URL=f"postgres://postroute@127.0.0.1:{port}/postroute", VAR_DIR=str(tmp_path))
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", READY],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert result.returncode == 0, result.stderr
    ok, checks = json.loads(result.stdout.strip().splitlines()[-1])
    assert not ok and checks["database"]["ok"] is False
    assert checks["database"]["error"] == "OperationalError"
    assert time.monotonic() - started < 20
