"""The live dashboard in Chromium: the dispatcher sends through a real SMTP
sink in this thread while the page, never reloaded, follows the numbers and
bars, then shows the hourly limit with the time sending resumes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template
from tests.mailing.dashboard_builders import running_mailing
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HOUR_TEXT = '[data-window="hour"] [data-f="text"]'


def text_becomes(page, selector: str, expected: str, timeout: int = 15_000) -> None:
    """Wait for the next polls to put `expected` in the element."""
    page.wait_for_function(
        "([selector, expected]) => (document.querySelector(selector) || {}).textContent === expected",
        arg=[selector, expected],
        timeout=timeout,
    )


def test_the_dashboard_follows_the_dispatcher_without_a_reload(page, live_server, alice, tenant_a, settings, tmp_path):
    # Batches of 2 that do not go on with their next letters (a slice of
    # 0): the page follows each step.
    settings.DISPATCH_BATCH, settings.DISPATCH_SLICE = 2, 0
    sign_in(page, alice, live_server)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, name="Sink mailbox", port=controller.port, max_per_hour=5)
        contacts = make_list(tenant_a, "Customers", [f"r{i}@x.test" for i in range(8)])
        mailing = Mailing(tenant=tenant_a, name="Spring sale", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contacts], servers=[server])
        # This thread is the worker: a chain lease keeps the start from
        # running the whole mailing at once in an eager Celery task.
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
        services.mailing_start(mailing=mailing)

        page.goto(live_server.url + "/")
        assert page.inner_text(HOUR_TEXT) == "0 sent · 5 left of 5"
        assert page.inner_text('[data-count="queued"]') == "8"
        page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        assert dispatch.run_mailing(mailing_id=mailing.pk) == "more"  # one batch of 2
        text_becomes(page, HOUR_TEXT, "2 sent · 3 left of 5")
        assert page.get_attribute('[data-window="hour"] [data-f="fill"]', "width") == "40"
        assert page.inner_text('[data-count="sent"]') == "2"
        assert page.get_attribute('.dash-mailing rect[data-status="sent"]', "width") == "25"
        assert page.inner_text('.dash-server [data-f="state_label"]') == "Sending"

        while dispatch.run_mailing(mailing_id=mailing.pk) == "more":
            pass
        assert len(handler.received) == 5

    resume = timezone.localtime(limits.next_room_at(server, tenant_a)).strftime("%H:%M UTC")
    text_becomes(page, '.dash-server [data-f="state_label"]', "Limit reached")
    notice = page.inner_text('.dash-server [data-f="notice"]')
    assert notice.startswith("Hourly limit reached — resumes") and notice.endswith(resume)
    assert page.inner_text(HOUR_TEXT) == "5 sent · 0 left of 5"
    assert page.get_attribute('[data-window="hour"] [data-f="fill"]', "class") == "meter-fill meter-full"
    text_becomes(page, '.dash-mailing [data-f="status_label"]', "Waiting for limits")
    assert page.inner_text('.dash-mailing [data-f="waiting_text"]').endswith(resume)
    assert page.inner_text('[data-count="queued"]') == "3"
    assert page.evaluate("window.loadedOnce") is True

    for width in (375, 1400):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=tmp_path / f"dashboard-{width}.png", full_page=True)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert (tmp_path / "dashboard-375.png").stat().st_size > 10_000
    assert not page.csp_errors
    print(f"screenshots: {tmp_path}")


def test_servers_and_mailings_come_and_go_without_a_reload(page, live_server, alice, tenant_a):
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/dashboard/")
    assert page.is_visible('[data-empty="servers"]') and page.is_visible('[data-empty="mailings"]')

    server = make_server(tenant_a, name="Fresh mailbox", max_per_day=300)
    mailing = running_mailing(tenant_a, [server], queued=4, name="Autumn sale")
    page.wait_for_selector(f'.dash-server[data-id="{server.public_id}"]', timeout=15_000)
    page.wait_for_selector(f'.dash-mailing[data-id="{mailing.public_id}"]', timeout=15_000)
    row = page.locator(".dash-server")
    assert row.locator('[data-f="name"]').inner_text() == "Fresh mailbox"
    assert row.locator('[data-f="platform"]').is_hidden()
    assert row.locator('[data-window="day"] [data-f="text"]').inner_text() == "0 sent · 300 left of 300"
    assert page.get_attribute(".dash-mailing a", "href") == f"/mailings/{mailing.public_id}/"
    assert page.inner_text('.dash-mailing [data-count="queued"]') == "4"
    assert page.is_hidden('[data-empty="servers"]') and page.is_hidden('[data-empty="mailings"]')

    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.COMPLETED)
    page.wait_for_selector('[data-empty="mailings"]', state="visible", timeout=15_000)
    assert page.locator(".dash-mailing").count() == 0
    assert not page.csp_errors
