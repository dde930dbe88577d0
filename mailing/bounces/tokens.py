"""Envelope tokens (VERP): a letter goes out with the envelope sender
`bounces+<token>@domain`, so a report about it comes back to that address
and names the letter even when it quotes nothing of the original.

The token is the letter's public id (base32, 26 characters) and an HMAC of
it (8 characters, 40 bits) under the installation's secret: only Postroute
can make one, so a report cannot name a letter it was not about by
guessing; a token made under a previous SECRET_KEY still reads while that
key is in SECRET_KEY_FALLBACKS (reports come back for days). Lower-case
letters and digits only: mail systems may lower-case a local part, and none
rewrites these."""

import base64
import hmac
import re
import uuid

from django.conf import settings
from django.utils.crypto import salted_hmac

SALT = "postroute.bounces.envelope-token"
ID_CHARS, MAC_CHARS = 26, 8
LENGTH = ID_CHARS + MAC_CHARS
# A local part may have 64 octets (RFC 5321 §4.5.3.1.1), in UTF-8 with
# SMTPUTF8 too (RFC 6531 §3.3): with a longer one the plain address goes
# out instead.
MAX_LOCAL_PART = 64
TOKEN_RE = re.compile(rf"\+([a-z2-7]{{{LENGTH}}})@", re.IGNORECASE)


def make(public_id: uuid.UUID) -> str:
    return _b32(public_id.bytes)[:ID_CHARS] + _mac(public_id)


def read(token: str) -> uuid.UUID | None:
    """The letter's public id, or None when the token is not one we made."""
    token = token.lower()
    if len(token) != LENGTH:
        return None
    try:
        public_id = uuid.UUID(bytes=base64.b32decode(token[:ID_CHARS].upper() + "======"))
    except (ValueError, TypeError):
        return None
    given = token[ID_CHARS:]
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return public_id if any(hmac.compare_digest(_mac(public_id, key), given) for key in keys) else None


def address(mailbox: str, public_id: uuid.UUID) -> str:
    """`local+token@domain`; the plain address when that would be too long."""
    local, _at, domain = mailbox.rpartition("@")
    tagged = f"{local}+{make(public_id)}"
    return f"{tagged}@{domain}" if local and len(tagged.encode()) <= MAX_LOCAL_PART else mailbox


def _mac(public_id: uuid.UUID, secret: str | None = None) -> str:
    return _b32(salted_hmac(SALT, public_id.bytes, secret=secret, algorithm="sha256").digest()[:5])


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()
