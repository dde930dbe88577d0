"""Time zones in Chromium: a browser in Moscow signs up in Europe/Moscow
without touching the select; an owner moves the organisation to Saigon on
its settings page, and the mailings list, a mailing's page and the
dashboard then show Saigon's times (UTC+7) with the zone where they could be
misread."""

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from accounts.models import Tenant
from mailing.models import Mailing
from tests.mailing.dashboard_builders import running_mailing
from tests.servers.factories import make_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")


def moment_text(moment, zone) -> str:
    """ "today at 10:01" or "tomorrow at 10:01", worked out here, not by the product."""
    local, today = moment.astimezone(zone), timezone.now().astimezone(zone).date()
    return f"{'today' if local.date() == today else 'tomorrow'} at {local:%H:%M}"


def test_a_moscow_browser_signs_up_in_moscow_time_and_a_saigon_tenant_reads_saigon_times(
    page, live_server, alice, tenant_a
):
    moscow = page.context.browser.new_context(timezone_id="Europe/Moscow").new_page()
    moscow.goto(live_server.url + "/accounts/signup/")
    assert moscow.input_value('select[name="time_zone"]') == "Europe/Moscow"
    assert fits(moscow, 375)
    moscow.fill('input[name="email"]', "olga@romashka.test")
    moscow.fill('input[name="organisation"]', "Romashka")
    moscow.fill('input[name="password"]', "a long passphrase 42")
    moscow.click('main button[type="submit"]')
    moscow.wait_for_url("**/signup/sent/")
    assert Tenant.objects.get(name="Romashka").time_zone == "Europe/Moscow"
    moscow.context.close()  # the browser outlives the test

    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/accounts/organisation/")
    page.select_option('select[name="time_zone"]', "Asia/Ho_Chi_Minh")
    page.click('form.form button[type="submit"]')
    assert "Times are now shown in Asia/Ho Chi Minh (UTC+7)" in page.inner_text(".messages")

    server = make_server(tenant_a, name="Yandex", max_per_hour=10)
    resume = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    mailing = running_mailing(tenant_a, [server], queued=3, status=Mailing.Status.WAITING, resume_at=resume)
    expected = f"{moment_text(resume, SAIGON)} UTC+7"
    assert resume.astimezone(UTC).strftime("%H:%M") not in expected  # the two zones differ on the page

    page.goto(live_server.url + "/mailings/")
    assert f"resumes {expected}" in page.inner_text("main")
    page.goto(live_server.url + f"/mailings/{mailing.public_id}/")
    # The page's history: when the mailing was created, in Saigon.
    assert f"Created {moment_text(mailing.created_at, SAIGON)}" in page.inner_text("main")

    page.goto(live_server.url + "/")
    assert page.inner_text('.dash-mailing [data-f="waiting_text"]') == f"Waiting for limits until {expected}"
    assert page.inner_text(".dash-zone") == "Times in Asia/Ho Chi Minh"
    first_hour = (timezone.now() - timedelta(hours=23)).astimezone(SAIGON).strftime("%H:00")
    assert page.inner_text('[data-f="first_hour"]') == first_hour
    page.wait_for_function(
        "() => document.querySelector('[data-f=\"updated\"]').textContent.endsWith(' UTC+7')", timeout=5_000
    )
    assert page.inner_text('[data-window="hour"] [data-f="label"]') == "Last 60 minutes"
    assert fits(page, 375) and fits(page, 1400)
    page.goto(live_server.url + "/accounts/organisation/")
    assert fits(page, 375)


def fits(page, width: int) -> bool:
    """Nothing wider than the screen (the zone select's longest names, the longer stamps)."""
    page.set_viewport_size({"width": width, "height": 900})
    return page.evaluate("document.documentElement.scrollWidth") <= width
