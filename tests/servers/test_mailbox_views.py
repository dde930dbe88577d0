"""The bounce mailbox page: one per tenant, scoped like everything else."""

import pytest
from django.urls import reverse

from servers.models import BounceMailbox

pytestmark = pytest.mark.django_db

DATA = {"email": "bounces@acme.test", "host": "8.8.8.8", "port": 993, "security": "ssl",
        "login": "bounces@acme.test", "password": "imap-pw", "folder": "INBOX", "enabled": "on"}  # fmt: skip


def test_the_owner_saves_the_mailbox_with_an_encrypted_password(alice, tenant_a):
    assert alice.client.post(reverse("servers:mailbox"), DATA).status_code == 302
    box = BounceMailbox.objects.get(tenant=tenant_a)
    assert box.get_password() == "imap-pw" and "imap-pw" not in box.password_encrypted
    page = alice.client.get(reverse("servers:mailbox")).content.decode()
    assert "imap-pw" not in page and box.password_encrypted not in page


def test_an_outsider_never_sees_nor_changes_another_tenants_mailbox(alice, charlie, tenant_a):
    alice.client.post(reverse("servers:mailbox"), DATA)
    assert charlie.client.get(reverse("servers:mailbox")).context["mailbox"] is None
    assert b"8.8.8.8" not in charlie.client.get(reverse("servers:list")).content
    charlie.client.post(reverse("servers:mailbox_delete"))
    assert BounceMailbox.objects.filter(tenant=tenant_a).exists()


def test_a_private_imap_host_is_refused_in_saas(alice, settings):
    settings.DEPLOYMENT_MODE, settings.SERVERS_ALLOW_PRIVATE_HOSTS = "saas", False
    response = alice.client.post(reverse("servers:mailbox"), {**DATA, "host": "192.168.0.10"})
    assert response.status_code == 400 and response.context["form"].errors["host"]
