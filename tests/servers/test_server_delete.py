"""Deleting a sending server: refused, naming the mailings, while a mailing
that has not finished may send through it — from the tenant's page, the
staff admin (one server or the bulk action) and the ORM alike; the
platform server too. A finished mailing only loses the link; deleting a
whole tenant still takes its servers and mailings with it."""

import re

import pytest
from django.db.models import RestrictedError
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import Tenant
from mailing import mailings
from mailing.models import Letter, Mailing, MailingServer, MailTemplate
from servers.models import SmtpServer
from tests.mailing.builders import make_list, make_template

from .factories import make_server

pytestmark = pytest.mark.django_db
S = Mailing.Status


@pytest.fixture
def staff(staff_client: Client) -> Client:
    return staff_client


def make_mailing(tenant: Tenant, name: str, servers: list[SmtpServer], status: str = S.DRAFT) -> Mailing:
    mailing = Mailing(tenant=tenant, name=name, template=make_template(tenant, name=f"T {name}"))
    contact_list = make_list(tenant, f"L {name}", [f"{name.lower().replace(' ', '')}@x.test"])
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    Mailing.objects.filter(pk=mailing.pk).update(status=status)
    return mailing


def exists(server: SmtpServer) -> bool:
    return SmtpServer.objects.filter(pk=server.pk).exists()


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ---------- the tenant's page ----------


@pytest.mark.parametrize("status", [S.DRAFT, S.SCHEDULED, S.ACTIVE, S.WAITING, S.PAUSED])
def test_the_tenant_cannot_delete_a_server_a_mailing_yet_to_finish_uses(alice, tenant_a, status):
    server = make_server(tenant_a, name="Own")
    make_mailing(tenant_a, "November", [server], status)
    response = alice.client.post(reverse("servers:delete", args=[server.public_id]), follow=True)
    label = Mailing.Status(status).label.lower()
    assert page_messages(response) == [
        f"Mailings that have not finished use this server: «November» ({label}). Finish, cancel or change them first."
    ]
    assert exists(server) and MailingServer.objects.filter(server=server).count() == 1


def test_the_message_names_five_mailings_and_counts_the_rest(alice, tenant_a):
    server = make_server(tenant_a, name="Own")
    for i in range(7):
        make_mailing(tenant_a, f"M{i}", [server])
    response = alice.client.post(reverse("servers:delete", args=[server.public_id]), follow=True)
    assert page_messages(response) == [
        "Mailings that have not finished use this server: «M0» (draft), «M1» (draft), «M2» (draft), «M3» (draft), "
        "«M4» (draft) and 2 more. "
        "Finish, cancel or change them first."
    ]
    assert exists(server)


@pytest.mark.parametrize("status", [S.COMPLETED, S.CANCELLED])
def test_a_finished_mailing_only_loses_the_link_and_its_letters_stay(alice, tenant_a, status):
    server = make_server(tenant_a, name="Own")
    mailing = make_mailing(tenant_a, "October", [server])
    mailings.mailing_start(mailing=mailing)
    Letter.objects.filter(mailing=mailing).update(server=server, status=Letter.Status.SENT)
    Mailing.objects.filter(pk=mailing.pk).update(status=status)
    response = alice.client.post(reverse("servers:delete", args=[server.public_id]), follow=True)
    assert page_messages(response) == ["Own was deleted."]
    assert not exists(server) and not MailingServer.objects.exists()
    letter = Letter.objects.get(mailing=mailing)
    assert (letter.status, letter.server) == (Letter.Status.SENT, None)


def test_an_unused_server_is_deleted(alice, tenant_a):
    server = make_server(tenant_a, name="Spare")
    make_mailing(tenant_a, "November", [make_server(tenant_a, name="Other")])
    response = alice.client.post(reverse("servers:delete", args=[server.public_id]), follow=True)
    assert page_messages(response) == ["Spare was deleted."]
    assert not exists(server)


# ---------- the staff admin ----------


def admin_delete(staff: Client, server: SmtpServer):
    return staff.post(reverse("admin:servers_smtpserver_delete", args=[server.pk]), {"post": "yes"})


def refusal(response) -> str:
    """The admin's refusal page, as text."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_admin_refuses_to_delete_a_used_server_naming_the_mailing(staff, tenant_a):
    server = make_server(tenant_a, name="Own")
    make_mailing(tenant_a, "November", [server], S.ACTIVE)
    response = admin_delete(staff, server)
    assert response.status_code == 200  # the refusal page, not a redirect to the list
    text = refusal(response)
    assert "would require deleting the following protected related objects" in text
    assert "Mailing using the server: «November» (sending)" in text
    assert exists(server)


def test_the_admin_bulk_delete_refuses_too(staff, tenant_a):
    used, spare = make_server(tenant_a, name="Own"), make_server(tenant_a, name="Spare")
    make_mailing(tenant_a, "November", [used], S.PAUSED)
    data = {"action": "delete_selected", "_selected_action": [used.pk, spare.pk], "post": "yes"}
    response = staff.post(reverse("admin:servers_smtpserver_changelist"), data)
    assert response.status_code == 200
    assert "Mailing using the server: «November» (paused)" in refusal(response)
    assert exists(used) and exists(spare)


@override_settings(DEPLOYMENT_MODE="saas")
def test_the_platform_server_cannot_be_deleted_while_a_tenants_mailing_may_use_it(staff, tenant_a, tenant_b):
    platform = make_server(None, name="Platform")
    make_mailing(tenant_b, "Globex news", [platform], S.SCHEDULED)
    make_mailing(tenant_a, "Old news", [platform], S.COMPLETED)
    response = admin_delete(staff, platform)
    text = refusal(response)
    assert "Mailing using the server: «Globex news» (scheduled)" in text and "Old news" not in text
    assert exists(platform)
    with pytest.raises(RestrictedError):
        platform.delete()
    assert exists(platform)


def test_the_admin_deletes_a_server_only_finished_mailings_used(staff, tenant_a):
    server = make_server(tenant_a, name="Own")
    make_mailing(tenant_a, "October", [server], S.COMPLETED)
    response = admin_delete(staff, server)
    assert response.status_code == 302
    assert not exists(server) and Mailing.objects.filter(name="October").exists()


# ---------- the whole tenant ----------


def test_deleting_a_tenant_takes_its_servers_and_mailings_whatever_their_state(staff, tenant_a, tenant_b):
    server = make_server(tenant_a, name="Own")
    for status in (S.DRAFT, S.ACTIVE, S.COMPLETED):
        make_mailing(tenant_a, f"M {status}", [server], status)
    kept = make_mailing(tenant_b, "Globex news", [make_server(tenant_b, name="Theirs")], S.ACTIVE)
    response = staff.post(reverse("admin:accounts_tenant_delete", args=[tenant_a.pk]), {"post": "yes"})
    assert response.status_code == 302, refusal(response)
    assert not Tenant.objects.filter(pk=tenant_a.pk).exists()
    assert not SmtpServer.objects.filter(tenant_id=tenant_a.pk).exists()
    assert not Mailing.objects.filter(tenant_id=tenant_a.pk).exists()
    assert not MailTemplate.objects.filter(tenant_id=tenant_a.pk).exists()
    assert list(Mailing.objects.all()) == [kept] and kept.server_links.count() == 1
