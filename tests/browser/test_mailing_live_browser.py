"""The mailing's page and the Mailings page in Chromium, never reloaded,
while the dispatcher sends through a real SMTP sink in this thread: the
counts, the letters, the state with the time sending resumes and the
history follow; no request goes out while the tab is hidden."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .conftest import sign_in
from .test_dashboard_browser import text_becomes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HIDE = """hidden => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_the_mailing_page_follows_the_dispatcher_and_rests_while_hidden(page, live_server, alice, tenant_a, tmp_path):
    sign_in(page, alice, live_server)
    polls = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/live.json") else None)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, name="Sink mailbox", port=controller.port, max_per_hour=4)
        contacts = make_list(tenant_a, "Customers", [f"r{i}@x.test" for i in range(6)])
        mailing = Mailing(tenant=tenant_a, name="Spring sale", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contacts], servers=[server])
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
        services.mailing_start(mailing=mailing, by=alice.user)

        page.goto(f"{live_server.url}/mailings/{mailing.public_id}/")
        assert page.inner_text('[data-count="queued"]') == "6"
        assert page.inner_text('h1 [data-f="status_label"]') == "Sending"
        page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        while dispatch.run_mailing(mailing_id=mailing.pk) == "more":
            pass
        assert len(handler.received) == 4

    resume = timezone.localtime(limits.next_room_at(server, tenant_a)).strftime("%H:%M")
    text_becomes(page, 'h1 [data-f="status_label"]', "Waiting for limits")
    waiting = page.inner_text('[data-f="waiting_text"]')
    assert waiting.startswith("Waiting for limits until") and f"at {resume}" in waiting
    assert page.inner_text('[data-count="sent"]') == "4" and page.inner_text('[data-count="queued"]') == "2"
    statuses = page.locator('[data-list="letters"] [data-f="status_label"]').all_inner_texts()
    assert statuses == ["Sent"] * 4 + ["Queued"] * 2
    assert page.locator('[data-list="letters"] [data-f="server"]').first.inner_text() == "Sink mailbox"
    assert page.locator('[data-list="events"] li').last.inner_text().endswith("Sending → Waiting for limits")
    assert page.is_visible('form[data-action="pause"]') and not page.is_visible('form[data-action="resume"]')
    assert page.evaluate("window.loadedOnce") is True

    # Hidden: no request at all; shown again: one at once.
    page.evaluate(HIDE, True)
    page.wait_for_timeout(300)  # an answer already on its way lands
    before = len(polls)
    services.transition(mailing=mailing, action="pause", by=alice.user)
    page.wait_for_timeout(3500)  # more than a poll's delay (3 s)
    assert len(polls) == before
    assert page.inner_text('h1 [data-f="status_label"]') == "Waiting for limits"
    page.evaluate(HIDE, False)
    text_becomes(page, 'h1 [data-f="status_label"]', "Paused", timeout=2000)
    assert page.is_visible('form[data-action="resume"]') and not page.is_visible('form[data-action="pause"]')

    for width in (375, 1400):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=tmp_path / f"mailing-{width}.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert not page.csp_errors


def test_the_mailings_page_moves_a_mailing_between_its_groups(page, live_server, alice, tenant_a):
    sign_in(page, alice, live_server)
    server = make_server(tenant_a, name="Own")
    mailing = Mailing(tenant=tenant_a, name="Spring sale", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a, "L", ["a@x.test"])], servers=[server])
    page.goto(f"{live_server.url}/mailings/")
    assert page.inner_text('[data-list="drafts"]').startswith("Spring sale")
    assert page.is_visible('[data-empty="running"]')
    page.evaluate("window.loadedOnce = true")

    dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
    services.mailing_start(mailing=mailing, by=alice.user)
    text_becomes(page, '[data-list="running"] [data-f="status_label"]', "Sending")
    assert page.evaluate("window.loadedOnce") is True
    assert page.inner_text('[data-f="drafts_count"]') == "0" and page.is_visible('[data-empty="drafts"]')
    row = page.locator('[data-list="running"] article')
    assert row.locator('[data-count="queued"]').inner_text() == "1"
    assert row.locator('form[data-action="pause"]').get_attribute("action") == f"/mailings/{mailing.public_id}/pause/"

    # The cloned row's own button works: it asks, then cancels.
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator('form[data-action="cancel"] button').click()
    page.wait_for_url(f"**/mailings/{mailing.public_id}/")
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.CANCELLED
    page.go_back()
    text_becomes(page, '[data-list="finished"] [data-f="status_label"]', "Cancelled")
    assert not page.csp_errors
