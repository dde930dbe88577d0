"""The SSRF guard on webhook URLs, switched on as in SaaS production (the
suite otherwise allows private hosts for its local receivers).

- Saving refuses internal targets (loopback, private, link-local with the
  cloud metadata address, IPv6 loopback, a name that resolves to a private
  address), plain http, and a user name or password in the URL: the error
  shows next to the URL field and nothing is stored.
- Each attempt checks again and connects only to the address it checked:
  a name that resolved to a public address when saved and to 127.0.0.1
  later (DNS rebinding) gets no connection, and a name is looked up once
  per attempt, the connection pinned to that answer.
- Self-hosted, http and private addresses are allowed, as for the SMTP
  servers; https is verified against the host name, not the address."""

import socket

import pytest
from django.urls import reverse

from accounts.webhooks import events, services
from accounts.webhooks.models import WebhookAttempt, WebhookEndpoint
from tests.certs import make_certs
from tests.servers.test_netguard import fake_getaddrinfo
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.django_db

GUARD_TEXT = "hosted accounts may not use"
INTERNAL = [
    "https://127.0.0.1/hook",
    "https://127.1:8443/hook",
    "https://0x7f000001/hook",
    "https://localhost/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://evil.example/hook",  # resolves to 10.0.0.1
    "https://mixed.example/hook",  # one public and one loopback address
]


@pytest.fixture
def guard_on(settings, monkeypatch) -> None:
    settings.DEPLOYMENT_MODE = "saas"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)


def add(client, url: str):
    return client.post(reverse("accounts:webhooks:list"), {"url": url, "events": ["letter.bounced"]})


@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_target_is_refused_next_to_the_url_field(alice, guard_on, url):
    response = add(alice.client, url)
    assert response.status_code == 400
    errors = response.context["form"].errors
    # 127.1 is refused before the guard: no host name ends in digits.
    assert list(errors) == ["url"] and (GUARD_TEXT in errors["url"][0] or "all digits" in errors["url"][0])
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://hooks.good.example/x", "Use an https:// URL"),
        ("https://crm:pw@good.example/x", "Leave the user name and password out"),
        ("ftp://good.example/x", "starts with https://"),
        ("https://good.example/x#frag", "fragment"),
        ("https:///nohost", "starts with https://"),
        ("https://good.example:99999/", "valid URL"),
    ],
)
def test_other_unusable_urls_are_refused_next_to_the_field(alice, guard_on, url, text):
    response = add(alice.client, url)
    assert response.status_code == 400 and text in response.context["form"].errors["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_a_public_https_url_is_accepted(alice, guard_on):
    assert add(alice.client, "https://good.example/postroute").status_code == 302
    assert WebhookEndpoint.objects.get().url == "https://good.example/postroute"


def test_a_name_that_turns_internal_after_saving_gets_no_connection(tenant_a, guard_on, monkeypatch, committed):
    answers = {"rebind.example": "8.8.8.8"}

    def rebinding(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return fake_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with webhook_receiver() as receiver:
        url = f"https://rebind.example:{receiver.port}/hook"
        endpoint, _ = services.endpoint_create(tenant=tenant_a, url=url, events=[events.IMPORT_FINISHED])
        answers["rebind.example"] = "127.0.0.1"  # the attacker's DNS changes its answer
        events.forget_subscriptions(tenant_a.pk)
        with committed():
            events.emit(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={})
    assert receiver.connections == 0
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.status_code is None and GUARD_TEXT in attempt.error and "127.0.0.1" in attempt.error


def test_an_attempt_looks_the_name_up_once_and_connects_to_that_answer(tenant_a, monkeypatch, committed):
    """Guard off (the receiver is local): the pinning holds in every mode."""
    lookups: list[str] = []

    def once_then_elsewhere(host, port, *args, **kwargs):
        if host == "hooks.test":
            lookups.append(host)
            ip = "127.0.0.1" if len(lookups) == 1 else "192.0.2.1"  # a second lookup would go nowhere
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return fake_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", once_then_elsewhere)
    with webhook_receiver(host="hooks.test") as receiver:
        _, receiver.secret = services.endpoint_create(
            tenant=tenant_a, url=receiver.url, events=[events.IMPORT_FINISHED]
        )
        events.forget_subscriptions(tenant_a.pk)
        with committed():
            events.emit(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={})
    assert lookups == ["hooks.test"]
    [request] = receiver.received
    assert request.verified and request.headers["Host"] == f"hooks.test:{receiver.port}"


def test_self_hosted_allows_http_and_private_addresses(alice, settings):
    settings.DEPLOYMENT_MODE = "self_hosted"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    assert add(alice.client, "http://10.1.2.3:8080/crm-hook").status_code == 302
    assert add(alice.client, "http://crm/hook").status_code == 302  # a LAN name without a dot


def test_https_is_verified_against_the_host_name(tenant_a, settings, tmp_path, monkeypatch, committed):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)  # mail.test -> 127.0.0.1
    good = make_certs(tmp_path / "good", dns=("mail.test",), ips=())
    settings.SERVERS_EXTRA_CA_FILE = str(good.ca_file)
    with webhook_receiver(tls=good.server_context(), host="mail.test") as receiver:
        endpoint, receiver.secret = services.endpoint_create(
            tenant=tenant_a, url=receiver.url, events=[events.IMPORT_FINISHED]
        )
        events.forget_subscriptions(tenant_a.pk)
        with committed():
            events.emit(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={})
    assert [r.verified for r in receiver.received] == [True]
    assert WebhookAttempt.objects.get(delivery__endpoint=endpoint).status_code == 200


def test_a_certificate_for_another_name_fails_the_attempt(tenant_a, settings, tmp_path, monkeypatch, committed):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    other = make_certs(tmp_path / "other", dns=("other.test",), ips=("127.0.0.1",))
    settings.SERVERS_EXTRA_CA_FILE = str(other.ca_file)
    with webhook_receiver(tls=other.server_context(), host="mail.test") as receiver:
        endpoint, _ = services.endpoint_create(tenant=tenant_a, url=receiver.url, events=[events.IMPORT_FINISHED])
        events.forget_subscriptions(tenant_a.pk)
        with committed():
            events.emit(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={})
    assert receiver.received == []
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.status_code is None and "certificate of mail.test could not be verified" in attempt.error
