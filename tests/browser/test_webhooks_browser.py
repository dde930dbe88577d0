"""The webhooks pages in Chromium: an owner adds an endpoint, sees its
secret once with a copy button, sends a test event that a real local
receiver takes, and reads the attempt in the log; both pages fit a phone
(375 px) and a wide screen (1400 px) without sideways scrolling."""

import os

import pytest

from accounts.webhooks.models import WebhookEndpoint
from tests.webhook_receiver import webhook_receiver

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("SCREENSHOTS_DIR")  # a directory to look at the pages in, outside the checkout


def fits(page, width: int) -> bool:
    page.set_viewport_size({"width": width, "height": 900})
    if SHOTS:
        name = page.url.rstrip("/").rsplit("/", 1)[-1][:8]
        page.screenshot(path=f"{SHOTS}/webhooks-{name}-{len(os.listdir(SHOTS))}-{width}.png", full_page=True)
    return page.evaluate("document.documentElement.scrollWidth") <= width


def test_adding_an_endpoint_and_sending_a_test_event(page, live_server, alice):
    sign_in(page, alice, live_server)
    with webhook_receiver() as receiver:
        page.goto(f"{live_server.url}/accounts/organisation/")
        page.click("text=Manage webhooks")
        assert fits(page, 375) and fits(page, 1400)
        page.fill("#id_url", receiver.url)
        page.fill("#id_description", "Our CRM")
        page.check("input[value='letter.bounced']")
        page.check("input[value='mailing.completed']")
        page.click("button:has-text('Add endpoint')")

        secret = page.inner_text("#webhook-secret-value")
        receiver.secret = secret
        assert secret.startswith("whsec_") and WebhookEndpoint.objects.get().secret() == secret
        assert page.locator("button[data-copy]").is_visible()
        assert fits(page, 375) and fits(page, 1400)
        page.click("button:has-text('Send test event')")
        page.wait_for_selector("[data-attempt]")
        assert fits(page, 375) and fits(page, 1400)
    [request] = receiver.received
    assert request.verified and request.event["type"] == "webhook.test"
    row = page.inner_text("[data-attempt]")
    assert "webhook.test" in row and "200" in row
    assert secret not in page.content()  # shown once: not after the test event's redirect
    assert not page.csp_errors
