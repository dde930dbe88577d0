"""Per-recipient unsubscribe links: signed, so they work without login and
cannot be forged for another address or another tenant."""

from django.core import signing
from django.urls import reverse

SALT = "mailing.unsubscribe"


def make_token(tenant_id: int, email: str) -> str:
    return signing.dumps([tenant_id, email], salt=SALT, compress=True)


def read_token(token: str) -> tuple[int, str]:
    """(tenant id, address); raises signing.BadSignature when tampered."""
    tenant_id, email = signing.loads(token, salt=SALT)
    return int(tenant_id), str(email)


def unsubscribe_url(base_url: str, tenant_id: int, email: str) -> str:
    return base_url.rstrip("/") + reverse("unsubscribe", args=[make_token(tenant_id, email)])
