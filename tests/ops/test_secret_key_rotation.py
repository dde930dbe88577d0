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


def test_a_bounce_of_a_letter_sent_before_the_rotation_still_names_it(settings):
    """Reports come back for days: the envelope token of a letter sent under
    the previous key still names the letter (mailing.bounces.tokens)."""
    import uuid

    from mailing.bounces import tokens

    public_id = uuid.uuid4()
    settings.SECRET_KEY = OLD_KEY
    token = tokens.make(public_id)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert tokens.read(token) == public_id
    assert tokens.read(tokens.make(public_id)) == public_id
    settings.SECRET_KEY_FALLBACKS = []
    assert tokens.read(token) is None  # a key dropped from the fallbacks signs nothing any more
