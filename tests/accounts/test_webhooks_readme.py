"""The README's signature check (section "Webhooks"), run as written
against a real delivery: it accepts what Postroute sent, and refuses a
changed body, another secret and an old timestamp."""

import hashlib
import hmac
import re
import time

import pytest

from accounts.webhooks import events
from tests.helpers import ROOT

from .webhook_helpers import make_endpoint

pytestmark = pytest.mark.django_db


def readme_verify():
    text = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n(# Verify a Postroute webhook.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # our own README
    return namespace["verify"]


def test_the_readme_snippet_verifies_a_real_delivery(tenant_a, receiver, committed):
    verify = readme_verify()
    make_endpoint(tenant_a, receiver, events=[events.IMPORT_FINISHED])
    with committed():
        events.emit(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={"import": {"rows": 2}})
    [request] = receiver.received
    header, body = request.headers["Postroute-Signature"], request.body

    assert verify(receiver.secret, header, body)
    assert not verify(receiver.secret, header, body.replace(b'"rows":2', b'"rows":3'))
    assert not verify("whsec_another", header, body)
    assert not verify(receiver.secret, "v1=" + header.split("v1=")[1], body)  # no timestamp
    # A request signed ten minutes ago, correctly: refused for its age alone.
    old = int(time.time()) - 600
    signature = hmac.new(receiver.secret.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify(receiver.secret, f"t={old},v1={signature}", body)
    assert verify(receiver.secret, f"t={old},v1={signature}", body, tolerance=900)
