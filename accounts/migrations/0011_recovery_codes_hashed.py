"""Recovery codes stored in plain text (django-otp's StaticToken) become
their keyed digests (accounts.recovery): a database dump no longer signs
anyone in past the second factor. The digest is frozen here as a migration
is; it must stay the one accounts.recovery computes.

Only plain codes are digested: django-otp made them 8 characters long, a
digest has 16, so running this again leaves digests alone. There is no way
back: the previous release, which compares plain codes, then refuses the
codes (the app's codes keep working; new recovery codes are made on the
Security page)."""

import base64

from django.conf import settings
from django.db import migrations
from django.db.models.functions import Length
from django.utils.crypto import salted_hmac

KEY_SALT = "postroute.accounts.recovery-code"
DIGEST_LENGTH = 16


def digest(user_id: int, code: str) -> str:
    normal = "".join(code.split()).replace("-", "").lower()
    mac = salted_hmac(KEY_SALT, f"{user_id}:{normal}", secret=settings.SECRET_KEY, algorithm="sha256").digest()
    return base64.b32encode(mac[:10]).decode().lower()


def hash_plain_codes(apps, schema_editor) -> None:
    StaticToken = apps.get_model("otp_static", "StaticToken")
    plain = StaticToken.objects.alias(length=Length("token")).exclude(length=DIGEST_LENGTH).select_related("device")
    for token in plain.iterator(chunk_size=1000):
        token.token = digest(token.device.user_id, token.token)
        token.save(update_fields=["token"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0010_fk_indexes_led_by_others"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(hash_plain_codes, migrations.RunPython.noop, elidable=False)]
