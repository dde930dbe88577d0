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


@pytest.mark.parametrize(("language", "shown"), [("ru", "1\u00a0500 мс"), ("vi", "1.500 ms")])
def test_a_steps_time_is_written_as_the_page_writes_numbers_after_a_poll(
    page, live_server, alice, tenant_a, language, shown
):
    """The page drew "1 500 мс" and the poll's script redrew "1500 мс"."""
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    sign_in(page, alice, live_server)
    step = {"name": "Connect", "ok": True, "ms": 1500, "detail": ""}
    test = ConnectionTest.objects.create(tenant=tenant_a, server=make_server(tenant_a), status="running", steps=[step])
    page.goto(f"{live_server.url}/servers/tests/{test.public_id}/")
    assert page.inner_text(".test-step-ms") == shown
    page.evaluate("document.querySelector('#test-steps li').setAttribute('data-drawn', '1')")
    page.wait_for_selector("#test-steps li:not([data-drawn])", timeout=10_000)  # redrawn by a poll
    assert page.inner_text(".test-step-ms") == shown
