"""A server's host, a bounce mailbox's and a webhook's must be a DNS host
name (RFC 1123 letters, digits and hyphens in each label, after IDNA 2008)
or an IP address: one no resolver could look up is refused next to its
field when saved, with what typed kept; international names stay."""

import pytest
from django.urls import reverse

from accounts.webhooks.models import WebhookEndpoint
from servers import rules
from servers.models import BounceMailbox, SmtpServer

pytestmark = pytest.mark.django_db
BAD = [
    "-bad-.test",
    "a..b",
    "host_with_underscore.test",
    "-smtp.example.com",
    "smtp-.example.com",
    "a" * 64 + ".example.com",
    ".".join(["a" * 63] * 4),  # 255 characters
    "smtp.example!.com",
    "☃.net",  # IDNA 2003 took it; IDNA 2008, the wire's, does not
]
GOOD = [
    "smtp.yandex.ru",
    "SMTP.Example.COM",
    "smtp.example.com.",  # fully qualified
    "почта.рф",
    "mail.bücher.de",
    "1smtp.example.com",
    "a" * 63 + ".example.com",
    "8.8.8.8",
    "[8.8.8.8]",
    "2001:4860:4860::8888",
    "[2001:4860:4860::8888]",
    "localhost",
]
SERVER = {"name": "Own", "sender_email": "n@acme.test", "port": 587, "security": "starttls",
          "login": "n@acme.test", "password": "pw", "enabled": "on"}  # fmt: skip
MAILBOX = {"email": "bounces@acme.test", "port": 993, "security": "ssl",
           "login": "bounces@acme.test", "password": "imap-pw", "folder": "INBOX", "enabled": "on"}  # fmt: skip
READING = {"read_bounces": "on", "imap_port": 993, "imap_security": "ssl", "imap_same_password": "on"}


@pytest.mark.parametrize("host", BAD)
def test_a_name_no_resolver_could_look_up_is_refused(host):
    assert "is not a valid host name" in rules.host_name_error(host)


@pytest.mark.parametrize("host", GOOD)
def test_host_names_international_names_and_ip_addresses_are_kept(host):
    assert rules.host_name_error(host) is None


def refused(response, field: str, typed: str) -> None:
    assert response.status_code == 400
    form = response.context["form"]
    assert "is not a valid host name" in " ".join(form.errors[field]), form.errors
    assert form[field].value() == typed  # nothing typed is lost


@pytest.mark.parametrize("host", ["-bad-.test", "a..b", "host_with_underscore.test", "x" * 64 + ".test"])
def test_the_server_form_refuses_it_next_to_the_host(alice, tenant_a, host):
    refused(alice.client.post(reverse("servers:add"), {**SERVER, "host": host}), "host", host)
    assert not SmtpServer.objects.filter(tenant=tenant_a).exists()


def test_the_server_forms_incoming_server_is_refused_next_to_its_field(alice, tenant_a):
    data = {**SERVER, "host": "smtp.example.com", **READING, "imap_host": "imap_box.example.com"}
    refused(alice.client.post(reverse("servers:add"), data), "imap_host", "imap_box.example.com")
    assert not SmtpServer.objects.filter(tenant=tenant_a).exists()


def test_the_bounce_mailbox_refuses_it_next_to_the_host(alice, tenant_a):
    refused(
        alice.client.post(reverse("servers:mailbox"), {**MAILBOX, "host": "pop_3.example.com"}),
        "host",
        "pop_3.example.com",
    )
    assert not BounceMailbox.objects.exists()


@pytest.mark.parametrize("host", ["почта.рф", "8.8.8.8", "[2001:4860:4860::8888]", "smtp.example.com."])
def test_the_server_form_keeps_international_names_and_addresses(alice, tenant_a, host):
    assert alice.client.post(reverse("servers:add"), {**SERVER, "host": host}).status_code == 302
    assert SmtpServer.objects.filter(tenant=tenant_a).count() == 1


def test_a_webhook_url_with_such_a_host_is_refused_next_to_it(alice):
    typed = "https://crm_hooks.example.com/postroute"
    response = alice.client.post(reverse("accounts:webhooks:list"), {"url": typed, "events": ["letter.bounced"]})
    refused(response, "url", typed)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("host", ["300.1.1.1", "192.168.1", "127.1", "1.2.3.4.5", "mx.example.123", "0x7f.0.0.1", "25"])
def test_a_name_whose_last_part_is_all_digits_is_refused(host):
    """No top-level domain is all digits (RFC 3696): such a name is an IP
    address mistyped (300.1.1.1, never found) or shortened (127.1, which
    getaddrinfo reads as 127.0.0.1), and the label rules let it through."""
    assert "all digits" in rules.host_name_error(host)
