"""`manage.py check --deploy` fails on each setting that is right on a
developer's machine and wrong on the platform (config/checks.py)."""

import pytest

from tests.helpers import deploy_env, manage

# One process checks all the bad values at once: each must be named.
BAD = {
    "SITE_URL": ("http://localhost:8000", "ops.E001"),
    "CELERY_BROKER_URL": ("filesystem://", "ops.E002"),
    "DATABASE_URL": ("sqlite:////tmp/postroute-check.sqlite3", "ops.E003"),
    "SECRETS_ENCRYPTION_KEYS": ("", "ops.E004"),
    "DEFAULT_FROM_EMAIL": ("Postroute <no-reply@localhost>", "ops.E005"),
}


def test_each_development_value_fails_the_deploy_check():
    env = deploy_env(**{name: value for name, (value, _) in BAD.items()})
    result = manage("check", "--deploy", env=env)
    assert result.returncode != 0
    for name, (_, check_id) in BAD.items():
        assert check_id in result.stderr, name


@pytest.mark.parametrize(("name", "value", "check_id"), [("SITE_URL", "https://127.0.0.1", "ops.E001")])
def test_one_bad_value_alone_fails(name, value, check_id):
    result = manage("check", "--deploy", env=deploy_env(**{name: value}))
    assert result.returncode != 0 and check_id in result.stderr
    assert result.stderr.count("ops.E") == 1


def test_private_hosts_in_saas_fail_the_deploy_check():
    # Production refuses it at start-up already; with DEBUG on it starts, and
    # the deploy check still says no.
    env = deploy_env(DEBUG="1", SERVERS_ALLOW_PRIVATE_HOSTS="1")
    result = manage("check", "--deploy", env=env)
    assert result.returncode != 0 and "ops.E006" in result.stderr
    without = deploy_env(DEBUG="1", SERVERS_ALLOW_PRIVATE_HOSTS="0")
    assert "ops.E006" not in manage("check", "--deploy", env=without).stderr


@pytest.mark.parametrize("keys", ["change-me-a-fernet-key", "bWFkZS11cC1mZXJuZXQta2V5LWZvci10ZXN0cy0wMDA=,oops"])
def test_an_encryption_key_that_is_not_a_fernet_key_fails_the_deploy_check(keys):
    """The example environment file's placeholder, left in: the platform
    would start and fail on the first SMTP password a tenant saves."""
    result = manage("check", "--deploy", env=deploy_env(SECRETS_ENCRYPTION_KEYS=keys))
    assert result.returncode != 0 and "ops.E007" in result.stderr
    assert "oops" not in result.stderr and "change-me" not in result.stderr  # never echoes a key


@pytest.mark.parametrize("token", ["change-me-a-long-random-token", "short-token"])
def test_a_placeholder_or_short_metrics_token_fails_the_deploy_check(token):
    """The example file's METRICS_TOKEN is public: left in, anyone scrapes."""
    result = manage("check", "--deploy", env=deploy_env(METRICS_TOKEN=token))
    assert result.returncode != 0 and "ops.E008" in result.stderr
    assert token not in result.stderr
    fine = manage("check", "--deploy", env=deploy_env(METRICS_TOKEN="Vq7" * 12))
    assert "ops.E008" not in fine.stderr


def test_a_site_url_the_site_does_not_answer_to_fails_the_deploy_check():
    """ALLOWED_HOSTS left at its default (localhost): every unsubscribe and
    verification link in letters would end on a 400."""
    result = manage("check", "--deploy", env=deploy_env(ALLOWED_HOSTS="localhost,127.0.0.1"))
    assert result.returncode != 0 and "ops.E009" in result.stderr
    fine = deploy_env(ALLOWED_HOSTS=".example.com")
    assert "ops.E009" not in manage("check", "--deploy", env=fine).stderr
