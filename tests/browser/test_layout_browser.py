"""Layout in Chromium where a newcomer saw it go wrong: the header on one
row at 1280 px with the organisation switcher, a mailing's actions at the
top of its head, its letters as two-line rows on a phone, and the new
mailing's servers one per line."""

import pytest
from django.utils import timezone

from accounts.models import Membership, Role
from mailing.models import Letter
from tests.mailing.builders import make_template
from tests.mailing.dashboard_builders import running_mailing
from tests.servers.factories import make_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_the_header_the_mailing_page_and_the_new_mailing_form_fit(page, live_server, alice, tenant_a, tenant_b):
    Membership.objects.create(user=alice.user, tenant=tenant_b, role=Role.MEMBER)
    server = make_server(tenant_a, name="Company mailbox with a long name", sender_email="news@acme.test")
    make_server(tenant_a, name="Backup", priority=2)
    mailing = running_mailing(tenant_a, [server], queued=2, sent_at=[timezone.now()], failed=1)
    Letter.objects.filter(mailing=mailing, status="failed").update(last_reply="550 5.1.1 <r3@x.test>: no such user")
    sign_in(page, alice, live_server)

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/mailings/{mailing.public_id}/")
    page.wait_for_selector(".tenant-switch.is-live")
    assert box(page, ".header-inner")["height"] <= 64  # one row: wordmark, organisation, switcher, nav, log out
    actions, title = box(page, ".mailing-actions"), box(page, "h1")
    assert actions["y"] < title["y"] + title["height"]  # at the top of the head, not halfway down

    page.set_viewport_size({"width": 375, "height": 800})
    rows = page.locator('[data-list="letters"] tr')
    assert rows.count() == 4
    assert all(rows.nth(i).bounding_box()["height"] < 64 for i in range(4))
    assert "no such user" in rows.nth(3).inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    make_template(tenant_a)
    page.set_viewport_size({"width": 1400, "height": 800})
    page.goto(f"{live_server.url}/mailings/new/")
    labels = page.locator("#id_servers label")
    assert labels.all_inner_texts()[0].startswith("1. Company mailbox with a long name")
    assert all(labels.nth(i).bounding_box()["height"] < 30 for i in range(labels.count()))  # one line each
    assert not page.csp_errors
