"""Per-recipient unsubscribe links: signed, so they work without login and
cannot be forged for another address or another tenant."""

import hashlib
import hmac
import time
from functools import cache
from json.encoder import encode_basestring_ascii

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, reverse

SALT = "mailing.unsubscribe"


def make_token(tenant_id: int, email: str) -> str:
    """What signing.dumps([tenant_id, email], salt=SALT) makes, character
    for character (a test compares), with the signer's key derived once per
    SECRET_KEY instead of once a letter: Django's signer took a fifth of
    the dispatcher's time on a letter. Not compressed: zlib makes so short a
    payload no shorter, and costs a tenth of building a message. Links made
    compressed still read. The payload is written as json.dumps writes the
    pair (an integer, and a string in its ASCII-only escapes), without
    making a JSON encoder for every letter; the timestamp once a second."""
    payload = f"[{tenant_id:d},{encode_basestring_ascii(email)}]".encode("ascii")
    value = f"{signing.b64_encode(payload).decode()}:{_timestamp()}"
    mac = _signer_mac(settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return f"{value}:{signing.b64_encode(mac.digest()).decode()}"


_second_and_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    global _second_and_stamp
    second, stamp = _second_and_stamp
    if (now := int(time.time())) != second:
        stamp = signing.b62_encode(now)
        # One tuple, replaced whole: safe across the worker's threads.
        _second_and_stamp = (now, stamp)
    return stamp


@cache
def _signer_mac(secret: str) -> hmac.HMAC:
    """signing.TimestampSigner(salt=SALT)'s HMAC (sha256, the key salted as
    django.utils.crypto.salted_hmac salts it), before any value."""
    key = hashlib.sha256(f"{SALT}signer".encode() + secret.encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def read_token(token: str) -> tuple[int, str]:
    """(tenant id, address); raises signing.BadSignature when tampered."""
    tenant_id, email = signing.loads(token, salt=SALT)
    return int(tenant_id), str(email)


def unsubscribe_url(base_url: str, tenant_id: int, email: str) -> str:
    before, after = link_around_token(base_url)
    return before + make_token(tenant_id, email) + after


def link_around_token(base_url: str) -> tuple[str, str]:
    """The link before and after the token, under the script prefix in
    force: a batch reads it once for all its letters (it is a context-local,
    which takes longer to read than the rest of the link takes to make)."""
    before, after = _path(get_script_prefix())
    return base_url.rstrip("/") + before, after


_MARK = "TOKEN"


def prepare() -> None:
    """Reverse the link's path now (a worker starting, config.celery)
    rather than in its first letter: the first reverse() imports the URL
    conf, half a second of CPU while every conversation of the process
    waits for the interpreter."""
    _path(get_script_prefix())


@cache
def _path(script_prefix: str) -> tuple[str, str]:
    """The link's path before and after the token: reversed once per process
    (and script prefix) instead of once per letter, a fifth of building a
    message."""
    before, _, after = reverse("unsubscribe", args=[_MARK]).rpartition(_MARK)
    return before, after
