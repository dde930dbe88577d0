"""`manage.py check --deploy` refuses a proxy whose hops the login throttle
would not count: every visitor would share the proxy's address."""

import pytest

from tests.helpers import deploy_env, manage, production_env


def test_behind_a_proxy_without_num_proxies_is_an_error():
    result = manage("check", "--deploy", env=deploy_env(BEHIND_PROXY="1"))
    assert result.returncode != 0
    assert "accounts.E001" in result.stderr and "NUM_PROXIES" in result.stderr


@pytest.mark.parametrize(("behind_proxy", "num_proxies"), [("1", "1"), ("1", "2"), ("0", "0")])
def test_a_counted_proxy_or_none_passes(behind_proxy, num_proxies):
    env = deploy_env(BEHIND_PROXY=behind_proxy, NUM_PROXIES=num_proxies)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_plain_check_leaves_it_to_deploy():
    assert manage("check", env=production_env(BEHIND_PROXY="1")).returncode == 0
