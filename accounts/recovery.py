"""Recovery codes, kept as keyed digests.

django-otp's static device keeps its tokens in plain text and finds one with
an equality lookup: whoever reads a database dump signs in past the second
factor. Here each code is stored as an HMAC keyed with SECRET_KEY (not in
the database) and bound to its user, truncated to the 16 characters of
StaticToken.token (80 bits; the codes themselves have 40). A code is
checked against every digest of the device in constant time, with
SECRET_KEY_FALLBACKS too, so codes made before a key rotation keep working
while the old key is kept. Codes are never checked by django-otp's own
StaticDevice.verify_token, which would take a stored digest typed as a code:
every login calls `match` below."""

import base64

from django.conf import settings
from django.db import transaction
from django.utils.crypto import constant_time_compare, salted_hmac
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

KEY_SALT = "postroute.accounts.recovery-code"


def normalise(code: str) -> str:
    """As shown (lower case, in one piece), whatever the case or spacing typed."""
    return "".join(code.split()).replace("-", "").lower()


def digest(*, user_id: int, code: str, secret: str | None = None) -> str:
    mac = salted_hmac(KEY_SALT, f"{user_id}:{normalise(code)}", secret=secret, algorithm="sha256").digest()
    return base64.b32encode(mac[:10]).decode().lower()


def make(*, device: StaticDevice, count: int) -> list[str]:
    """Replace the device's codes; the plain codes are returned, once."""
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(count)]
    StaticToken.objects.bulk_create(
        StaticToken(device=device, token=digest(user_id=device.user_id, code=c)) for c in codes
    )
    return codes


def _use(device: StaticDevice, code: str) -> bool:
    """StaticDevice.verify_token, with digests compared in constant time."""
    if not device.verify_is_allowed()[0]:
        return False
    wanted = [
        digest(user_id=device.user_id, code=code, secret=key)
        for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]
    match = None
    for token in device.token_set.all():
        for value in wanted:
            if constant_time_compare(token.token, value) and match is None:
                match = token
    if match is None:
        device.throttle_increment()
        return False
    match.delete()
    device.throttle_reset(commit=False)
    device.set_last_used_timestamp(commit=False)
    device.save()
    return True


def match(user, code: str) -> Device | None:
    """django_otp.match_token for Postroute's devices: the app's code, or a
    recovery code, which is used up."""
    with transaction.atomic():
        for device in devices_for_user(user, for_verify=True):
            if _use(device, code) if isinstance(device, StaticDevice) else device.verify_token(code):
                return device
    return None
