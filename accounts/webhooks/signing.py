"""The signature a receiver checks, as Stripe's: HMAC-SHA256 with the
endpoint's secret over "<timestamp>.<body>", sent as

    Postroute-Signature: t=1764736800,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

The timestamp is the attempt's (each retry signs anew), so a receiver may
refuse a body older than a few minutes: a captured request cannot be
replayed later. README, "Webhooks", shows the receiver's check in Python."""

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

HEADER = "Postroute-Signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def body(*, event_id: str, type: str, created: datetime, data: dict[str, Any]) -> bytes:
    """The JSON every delivery carries: {id, type, created, data}."""
    event = {"id": event_id, "type": type, "created": created.isoformat(), "data": data}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secret: str, timestamp: int, payload: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, payload)}"
