"""`WEB_PORT=8001 make run` serves on port 8001: the links the product puts
in letters (unsubscribe, verification, password reset) and the address the
demo prints must point there too, not at the default port where nothing
answers. An explicit SITE_URL still wins."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = "import django; django.setup(); from django.conf import settings; print(settings.SITE_URL)"


def site_url(tmp_path, **variables: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": str(tmp_path / "none.env"),  # not the checkout's own .env
        "DEBUG": "1",
        "SECRET_KEY": "x" * 50,
        **variables,
    }
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"WEB_PORT": "8001"}, "http://127.0.0.1:8001"),
        ({"WEB_PORT": "8001", "SITE_URL": "https://mail.example.com/"}, "https://mail.example.com"),
    ],
)
def test_the_default_site_url_follows_the_port_make_run_serves_on(tmp_path, variables, expected):
    assert site_url(tmp_path, **variables) == expected
