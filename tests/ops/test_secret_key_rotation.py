"""Rotating SECRET_KEY (after a leak, a departing admin): the previous key
goes in SECRET_KEY_FALLBACKS, so the unsubscribe links in letters already
delivered keep working (a recipient must be able to leave), as do sessions
and the verification and reset links still pending."""

from django.core import signing

from mailing import unsubscribe
from tests.helpers import manage, production_env

OLD_KEY = "old-production-key-" + "Qw8eRt5y" * 6
NEW_KEY = "new-production-key-" + "Zx3cVb7n" * 6
READ = "from mailing.unsubscribe import read_token; import sys; print(read_token(sys.argv[-1]))"


def read_in_production(token: str, tmp_path, **env: str):
    variables = production_env(SECRET_KEY=NEW_KEY, VAR_DIR=str(tmp_path), **env)
    return manage("shell", "-c", READ.replace("sys.argv[-1]", repr(token)), env=variables)


def test_a_link_signed_with_the_previous_key_still_unsubscribes(tmp_path):
    token = signing.dumps([7, "ivan@example.com"], key=OLD_KEY, salt=unsubscribe.SALT)
    refused = read_in_production(token, tmp_path)
    assert "BadSignature" in refused.stderr
    result = read_in_production(token, tmp_path, SECRET_KEY_FALLBACKS=f"{OLD_KEY},unused-older-key-{'x' * 40}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(7, 'ivan@example.com')"
