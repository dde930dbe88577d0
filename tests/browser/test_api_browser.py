"""The API's pages in Chromium under the real CSP: the reference page
(Swagger UI from our static files) renders every operation with no CSP
violation; the keys page shows a new key once and fits 375 px and 1400 px."""

import pytest

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_reference_page_renders_under_the_csp(page, live_server):
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/contacts/bulk/" in p for p in paths)
    assert any("/api/v1/bounces/" in p for p in paths)
    assert not page.csp_errors, page.csp_errors


def test_the_keys_page_shows_a_new_key_once_and_fits(page, live_server, alice, tenant_a):
    sign_in(page, alice, live_server)
    for width in (375, 1400):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{live_server.url}/accounts/organisation/api-keys/")
        page.fill("#id_name", f"CRM {width}")
        page.check("input[name=scopes][value=contacts]")
        page.click("#create-key button[type=submit]")
        secret = page.input_value("#api-key-secret")
        assert secret.startswith("pr_")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.goto(f"{live_server.url}/accounts/organisation/api-keys/")
        assert secret not in page.content()
        assert page.locator("table tbody tr").count() >= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert not page.csp_errors, page.csp_errors
