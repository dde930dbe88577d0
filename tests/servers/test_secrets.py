"""Passwords at rest: encrypted, rotatable, never rendered back."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from accounts.models import WebhookEndpoint
from servers.models import BounceMailbox, SmtpServer

from .factories import make_server

pytestmark = pytest.mark.django_db

SECRET = "app-password-Zq9!"


def raw_column(model, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT password_encrypted FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_database_never_holds_the_plain_password(tenant_a):
    server = make_server(tenant_a, password=SECRET)
    raw = raw_column(SmtpServer, server.pk)
    assert SECRET not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert SmtpServer.objects.get(pk=server.pk).get_password() == SECRET


def test_rotation_keeps_every_password_readable(tenant_a, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    server = make_server(tenant_a, password=SECRET)
    mailbox = BounceMailbox(tenant=tenant_a, host="8.8.8.8", login="b@acme.test")
    mailbox.set_password("imap-" + SECRET)
    mailbox.save()
    endpoint = WebhookEndpoint(tenant=tenant_a, url="https://crm.example.com/hook", events=["letter.bounced"])
    endpoint.set_secret("whsec_" + SECRET)
    endpoint.save()
    settings.SECRETS_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_secrets")
    settings.SECRETS_ENCRYPTION_KEYS = [new]  # the old key is gone
    assert SmtpServer.objects.get(pk=server.pk).get_password() == SECRET
    assert BounceMailbox.objects.get(pk=mailbox.pk).get_password() == "imap-" + SECRET
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret() == "whsec_" + SECRET


def test_the_edit_form_never_contains_the_password_and_empty_keeps_it(alice):
    server = make_server(alice.user.memberships.get().tenant, host="8.8.8.8", port=465, security="ssl", password=SECRET)
    url = reverse("servers:edit", args=[server.public_id])
    page = alice.client.get(url).content.decode()
    assert SECRET not in page and server.password_encrypted not in page
    data = {"name": "Renamed", "sender_email": server.sender_email, "host": "8.8.8.8", "port": 465,
            "security": "ssl", "login": server.login, "password": "", "enabled": "on"}  # fmt: skip
    assert alice.client.post(url, data).status_code == 302
    server.refresh_from_db()
    assert server.name == "Renamed" and server.get_password() == SECRET


def test_a_new_host_needs_the_password_typed_again(alice):
    server = make_server(alice.user.memberships.get().tenant, host="8.8.8.8", port=465, security="ssl", password=SECRET)
    url = reverse("servers:edit", args=[server.public_id])
    data = {"name": "x", "sender_email": server.sender_email, "host": "1.1.1.1", "port": 465,
            "security": "ssl", "login": server.login, "password": "", "enabled": "on"}  # fmt: skip
    response = alice.client.post(url, data)
    assert "type the password again" in response.context["form"].errors["password"][0]
    server.refresh_from_db()
    assert server.host == "8.8.8.8"
    data["password"] = "retyped"
    assert alice.client.post(url, data).status_code == 302
    server.refresh_from_db()
    assert (server.host, server.get_password()) == ("1.1.1.1", "retyped")


def test_a_typed_password_survives_a_form_error_and_a_stored_one_is_never_shown(alice, settings):
    settings.DEPLOYMENT_MODE = "saas"
    data = {"name": "Mine", "kind": "external", "sender_email": "me@acme.test", "host": "8.8.8.8", "port": 25,
            "security": "none", "login": "me@acme.test", "password": "typed-" + SECRET, "verify_tls": "on",
            "enabled": "on", "accept_warning": "on"}  # fmt: skip
    page = alice.client.post(reverse("servers:add"), data)
    assert page.status_code == 400 and f'value="typed-{SECRET}"' in page.content.decode()
    server = make_server(alice.user.memberships.get().tenant, host="8.8.8.8", port=465, security="ssl", password=SECRET)
    page = alice.client.post(reverse("servers:edit", args=[server.public_id]), {**data, "password": ""})
    assert page.status_code == 400 and SECRET not in page.content.decode()


def test_rotation_never_puts_back_a_password_changed_meanwhile(tenant_a, settings, monkeypatch):
    """rotate_secrets runs on a live platform: a tenant who saves a new
    password while it works keeps the new one, not the old one re-encrypted."""
    from servers import crypto

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    server = make_server(tenant_a, password=SECRET)
    settings.SECRETS_ENCRYPTION_KEYS = [new, old]
    rotate = crypto.rotate

    def tenant_saves_meanwhile(token: str) -> str:
        changed = SmtpServer.objects.get(pk=server.pk)
        changed.set_password("changed-" + SECRET)
        changed.save()
        return rotate(token)

    monkeypatch.setattr(crypto, "rotate", tenant_saves_meanwhile)
    call_command("rotate_secrets")
    assert SmtpServer.objects.get(pk=server.pk).get_password() == "changed-" + SECRET
