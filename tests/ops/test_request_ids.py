"""Every request has an id (the proxy's, or a new one) that goes back in
the response and onto every log line written while it runs, with the
tenant; a task queued meanwhile carries both in its message headers."""

import logging
import re
import uuid

import pytest
from django.test import Client

from config import requestids

pytestmark = pytest.mark.django_db


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(requestids.ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def request_log():
    handler = Collect()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_the_proxys_id_is_kept_and_a_bad_one_replaced():
    assert Client().get("/accounts/login/", HTTP_X_REQUEST_ID="edge-7f3a.01")["X-Request-ID"] == "edge-7f3a.01"
    for bad in ("two words", "x" * 65, "<script>", ""):
        given = Client().get("/accounts/login/", HTTP_X_REQUEST_ID=bad)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", given), bad
    first, second = (Client().get("/accounts/login/")["X-Request-ID"] for _ in range(2))
    assert first != second


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_the_ops_endpoints_answer_with_the_request_id_too(path):
    """The README says every response carries it; the ops endpoints answered
    before the middleware that sets it, so a proxy's health check could not
    be found in the logs by its id."""
    assert Client().get(path, HTTP_X_REQUEST_ID="lb-check.9")["X-Request-ID"] == "lb-check.9"


def test_log_lines_of_a_request_carry_its_id_and_tenant(alice, tenant_a, request_log):
    response = alice.client.get(f"/mailings/{uuid.uuid4()}/", HTTP_X_REQUEST_ID="rid-42")
    assert response.status_code == 404
    record = next(r for r in request_log if r.getMessage().startswith("Not Found"))
    assert record.request_id == "rid-42" and record.tenant_id == tenant_a.pk
    assert requestids.current() == {}  # nothing left over for the next request


def test_a_task_published_inside_a_request_carries_its_ids():
    headers: dict = {}
    with requestids.bound(request_id="rid-9", tenant_id=3):
        requestids._add_headers(headers=headers)
    assert headers == {"request_id": "rid-9", "tenant_id": 3}
    outside: dict = {}
    requestids._add_headers(headers=outside)
    assert outside == {}
