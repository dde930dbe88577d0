"""Sign-up, the dashboard, the server form and the mailing page rendered in
Chromium in Russian and Vietnamese: no English from the catalogue left in
the visible text, and nothing wider than the screen at 375 and 1400 px
(Russian words are long). The Russian dashboard is saved for the README."""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from mailing import mailings as services
from mailing.models import Mailing
from tests.i18n.english import english_left
from tests.mailing.builders import make_list, make_template
from tests.mailing.dashboard_builders import running_mailing
from tests.servers.factories import make_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = (375, 1400)
# SCREENSHOTS=docs writes the README's picture into docs/ (make screenshots);
# otherwise it goes to the test's temporary directory.
SCREENSHOT_DIR = os.environ.get("SCREENSHOTS", "")
# Test data in neither language's words, so only the interface can be English.
DATA = {"server": "smtp-1", "mailing": "2026-Q4", "list": "CRM-42", "template": "T-7"}


# The page's visible text without the lists of zone and language names (data).
VISIBLE_TEXT = """() => {
  const lists = [...document.querySelectorAll('select[name=time_zone], select[name=language]')];
  lists.forEach((list) => { list.style.display = 'none'; });
  const text = document.body.innerText;
  lists.forEach((list) => { list.style.display = ''; });
  return text;
}"""


def check(page, url: str, *, language: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.get_attribute("html", "lang") == language
        visible = page.evaluate(VISIBLE_TEXT)
        left = english_left(visible)
        assert left == [], f"{url} at {width}px: {left}"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{url} overflows at {width}px"


@pytest.fixture
def tenant_data(tenant_a):
    tenant_a.time_zone = "Europe/Moscow"
    tenant_a.save(update_fields=["time_zone"])
    server = make_server(tenant_a, name=DATA["server"], max_per_hour=500, max_per_day=12_345)
    running_mailing(tenant_a, [server], name=DATA["mailing"], queued=3, sent=2, failed=1)
    template = make_template(tenant_a, name=DATA["template"])
    draft = Mailing(tenant=tenant_a, name=DATA["mailing"] + "-d", template=template)
    services.mailing_save(mailing=draft, lists=[make_list(tenant_a, DATA["list"], ["a@x.test"])], servers=[server])
    return server, draft


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_the_pages_speak_the_users_language_at_every_width(page, live_server, alice, tenant_data, language, tmp_path):
    server, draft = tenant_data
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    sign_in(page, alice, live_server)
    check(page, live_server.url + reverse("dashboard:page"), language=language)
    if language == "ru":
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(live_server.url + reverse("dashboard:page"))
        page.wait_for_load_state("load")
        folder = Path(settings.BASE_DIR) / SCREENSHOT_DIR if SCREENSHOT_DIR else tmp_path
        page.screenshot(path=folder / "dashboard-ru.png", full_page=True)
        assert (folder / "dashboard-ru.png").stat().st_size > 10_000
    check(page, live_server.url + reverse("servers:edit", args=[server.public_id]), language=language)
    check(page, live_server.url + reverse("servers:add"), language=language)
    check(page, live_server.url + reverse("mailings:detail", args=[draft.public_id]), language=language)
    assert not page.csp_errors


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_sign_up_follows_the_browser_language(browser_context, live_server, language, db):
    page = browser_context.new_page()
    page.set_extra_http_headers({"Accept-Language": f"{language},en;q=0.5"})
    check(page, live_server.url + reverse("accounts:signup"), language=language)
