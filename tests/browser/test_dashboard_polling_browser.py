"""The dashboard's polls in Chromium: the page sends the stamp back, a poll
when nothing changed is answered 304 and leaves the page as it is, and the
next change still reaches the page."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.mailing.dashboard_builders import bucket
from tests.servers.factories import make_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HOUR_TEXT = '[data-window="hour"] [data-f="text"]'


def test_a_poll_when_nothing_changed_gets_304_and_the_page_keeps_its_figures(page, live_server, alice, tenant_a):
    if connection.vendor != "postgresql":
        pytest.skip("the stamp reads PostgreSQL's row versions (SQLite gets no ETag)")
    server = make_server(tenant_a, name="Yandex", max_per_hour=10)
    bucket(server, tenant_a, timezone.now(), 3)
    polls: list[tuple[int, str | None]] = []
    page.on(
        "response",
        lambda r: (
            polls.append((r.status, r.request.headers.get("if-none-match")))
            if r.url.endswith("/dashboard/data.json")
            else None
        ),
    )
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/dashboard/")
    # The first poll has no stamp to send; the next sends the one it got.
    _wait_until(page, lambda: any(status == 304 for status, _ in polls))
    first, *rest = polls
    assert first == (200, None) and all(etag for _, etag in rest)
    assert page.inner_text(HOUR_TEXT) == "3 sent · 7 left of 10"
    assert page.is_hidden('[data-f="offline"]')

    bucket(server, tenant_a, timezone.now() - timedelta(minutes=2), 2)
    page.wait_for_function(
        "([s, text]) => document.querySelector(s).textContent === text",
        arg=[HOUR_TEXT, "5 sent · 5 left of 10"],
        timeout=15_000,
    )
    assert not page.csp_errors


def _wait_until(page, condition, seconds: float = 15) -> None:
    """Let the page run (its responses arrive while it waits) until `condition`."""
    for _ in range(int(seconds * 5)):
        if condition():
            return
        page.wait_for_timeout(200)
    raise AssertionError("the page never got there")
