"""The server pages in Chromium: the address fills the settings, and the
connection test page follows the test without a reload."""

import pytest

from servers import services
from servers.models import ConnectionTest
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_typing_the_mailbox_address_fills_the_server_settings(page, live_server, alice, tmp_path):
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/servers/add/")
    page.fill("input[name=sender_email]", "shop@yandex.ru")
    page.press("input[name=sender_email]", "Tab")
    assert page.input_value("input[name=host]") == "smtp.yandex.ru"
    assert page.input_value("input[name=port]") == "465"
    assert page.input_value("select[name=security]") == "ssl"
    assert page.input_value("input[name=login]") == "shop@yandex.ru"
    assert "does not allow sender substitution" in page.inner_text("#substitution-note")
    page.screenshot(path=tmp_path / "server-form.png", full_page=True)
    # A hand-typed field is never overwritten by the next address.
    page.fill("input[name=host]", "smtp.example.org")
    page.fill("input[name=sender_email]", "shop@gmail.com")
    page.press("input[name=sender_email]", "Tab")
    assert page.input_value("input[name=host]") == "smtp.example.org"
    assert not page.csp_errors


def test_the_test_page_follows_the_test_without_a_reload(page, live_server, alice, tenant_a, tmp_path):
    sign_in(page, alice, live_server)
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        test = ConnectionTest.objects.create(tenant=tenant_a, server=server)
        page.goto(f"{live_server.url}/servers/tests/{test.public_id}/")
        assert page.locator("#test-result").is_hidden()
        services.connection_test_run(test_id=test.pk)  # the worker's part
    page.wait_for_selector("#test-result:not([hidden])", timeout=10_000)
    assert "works" in page.inner_text("#test-result")
    assert page.locator("#test-steps li").count() == 6
    page.screenshot(path=tmp_path / "server-test.png", full_page=True)
    assert not page.csp_errors


def test_the_bounce_mailbox_form_follows_the_protocol(page, live_server, alice):
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/servers/bounce-mailbox/")
    ssl = "select[name=security] option[value=ssl]"
    assert page.inner_text(ssl) == "SSL/TLS (implicit, usually port 993)"  # not SMTP's 465
    page.fill("input[name=email]", "bounces@yandex.ru")
    page.press("input[name=email]", "Tab")
    assert (page.input_value("input[name=host]"), page.input_value("input[name=port]")) == ("imap.yandex.ru", "993")
    page.select_option("select[name=protocol]", "pop3")
    assert (page.input_value("input[name=host]"), page.input_value("input[name=port]")) == ("pop.yandex.ru", "995")
    assert page.inner_text(ssl) == "SSL/TLS (implicit, usually port 995)"
    # A host typed by hand stays; the port follows the protocol.
    page.fill("input[name=host]", "mail.example.org")
    page.select_option("select[name=protocol]", "imap")
    assert (page.input_value("input[name=host]"), page.input_value("input[name=port]")) == ("mail.example.org", "993")
    assert not page.csp_errors
