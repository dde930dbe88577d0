"""DOMAIN.md §1-2 through every path: the model, the tenant's form, the
staff admin, and once more at connect time."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from servers import rules
from servers.models import BounceMailbox, SmtpServer
from servers.probes import mailbox_probe, smtp_probe
from servers.rules import INTERNAL_REFUSED, MAILBOX_SMTP_PORT_REFUSED, PORT_25_REFUSED, PORT_25_REFUSED_PLATFORM
from tests.helpers import SPECIAL_USE_ADDRESSES, deployment_mode
from tests.smtp_servers import smtp_server

from .factories import make_server

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Company",
    "sender_email": "news@acme.test",
    "sender_name": "Acme",
    "host": "8.8.8.8",
    "port": 465,
    "security": "ssl",
    "login": "news@acme.test",
    "password": "pw",
    "enabled": "on",
}


@pytest.fixture
def saas(settings):
    settings.DEPLOYMENT_MODE = "saas"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    return settings


def post(person, **changes):
    return person.client.post(reverse("servers:add"), {**FORM, **changes})


def test_port_25_is_refused_for_saas_tenants_in_the_model(saas, tenant_a):
    server = SmtpServer(tenant=tenant_a, name="x", sender_email="a@acme.test", host="8.8.8.8", port=25)
    with pytest.raises(ValidationError) as exc:
        server.full_clean()
    assert exc.value.message_dict["port"] == [PORT_25_REFUSED]


def test_port_25_is_refused_through_the_form_next_to_the_field(saas, alice):
    response = post(alice, port=25, security="none", accept_warning="on")
    assert response.status_code == 400
    assert response.context["form"].errors["port"] == [PORT_25_REFUSED]
    assert b"cannot add their own port-25 server" in response.content
    assert not SmtpServer.objects.exists()


def test_the_port_25_refusal_names_the_platform_server_only_where_there_is_one(saas, alice):
    assert "platform" not in PORT_25_REFUSED
    make_server(None, name="Postroute relay")
    response = post(alice, port=25, security="none", accept_warning="on")
    assert response.context["form"].errors["port"] == [PORT_25_REFUSED_PLATFORM.format(name="Postroute relay")]
    assert "«Postroute relay»" in response.content.decode()


def test_port_25_is_allowed_when_self_hosted_and_for_the_platform_server(settings, alice):
    settings.DEPLOYMENT_MODE = "self_hosted"
    assert post(alice, port=25, security="none", kind="external", verify_tls="on").status_code == 302
    settings.DEPLOYMENT_MODE = "saas"
    SmtpServer(tenant=None, name="Platform", sender_email="p@postroute.test", host="8.8.4.4", port=25).full_clean()


def test_internal_servers_are_for_self_hosted_installations_only(settings, tenant_a):
    internal = SmtpServer(tenant=tenant_a, name="local", kind=SmtpServer.Kind.INTERNAL, sender_email="a@acme.test")
    settings.DEPLOYMENT_MODE = "saas"
    with pytest.raises(ValidationError) as exc:
        internal.full_clean()
    assert exc.value.message_dict["kind"] == [INTERNAL_REFUSED]
    settings.DEPLOYMENT_MODE = "self_hosted"
    internal.full_clean()  # only the sender address is needed


@pytest.mark.parametrize("address", SPECIAL_USE_ADDRESSES)
def test_a_sender_on_a_special_use_domain_is_refused_in_saas_like_a_contact(settings, alice, address):
    deployment_mode(settings, "saas")
    response = post(alice, sender_email=address, login=address)
    assert response.status_code == 400
    domain = address.partition("@")[2]
    assert response.context["form"].errors["sender_email"] == [
        f"“{domain}” is a special-use or reserved name that only a private network can reach; "
        "only a self-hosted installation may use it."
    ]
    assert not SmtpServer.objects.exists()
    deployment_mode(settings, "self_hosted")
    assert post(alice, sender_email=address, login=address, kind="external", verify_tls="on").status_code == 302
    assert SmtpServer.objects.get().sender_email == address


def test_a_server_saved_with_a_special_use_sender_still_connects_after_a_switch_to_saas(settings, tenant_a):
    # The sender is a rule of saving; refusing at connect time would stall
    # its mailings without a word.
    server = make_server(tenant_a, sender_email="news@corp.local")
    deployment_mode(settings, "saas")
    with pytest.raises(ValidationError):
        server.full_clean()
    rules.assert_connectable(server)


def test_the_saas_form_offers_neither_internal_nor_unverified_tls(saas, alice):
    form = alice.client.get(reverse("servers:add")).context["form"]
    assert "kind" not in form.fields and "verify_tls" not in form.fields


def test_a_private_host_is_refused_through_the_form(saas, alice):
    response = post(alice, host="10.0.0.7")
    assert "private" in response.context["form"].errors["host"][0]
    response = post(alice, host="localhost")
    assert response.context["form"].errors["host"]


def test_header_injection_in_server_fields_is_refused(alice):
    for field, value in [("sender_name", "Acme\r\nBcc: x@evil.test"), ("name", "a\nb"), ("login", "a\x00b")]:
        response = post(alice, **{field: value})
        assert response.status_code == 400
        assert response.context["form"].errors[field], field
    assert not SmtpServer.objects.exists()


def test_a_port_security_mismatch_is_a_warning_the_user_may_accept(alice):
    response = post(alice, port=465, security="starttls")
    assert (
        response.status_code == 400 and "465 normally uses SSL" in response.context["form"].errors["accept_warning"][0]
    )
    assert post(alice, port=465, security="starttls", accept_warning="on").status_code == 302


def test_substitution_is_refused_for_providers_that_forbid_it(alice):
    response = post(alice, host="smtp.mail.ru", allow_sender_substitution="on")
    assert (
        "Mail.ru does not allow sender substitution" in response.context["form"].errors["allow_sender_substitution"][0]
    )


def test_the_admin_obeys_the_same_rules(saas, tenant_a):
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import User

    staff = User.objects.create_superuser("ops@postroute.test", "pw")
    device = TOTPDevice.objects.create(user=staff, name="x", confirmed=True)
    client = Client()
    client.force_login(staff)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    data = {
        "tenant": tenant_a.pk, "name": "via admin", "kind": "external", "sender_email": "a@acme.test",
        "host": "8.8.8.8", "port": 25, "security": "none", "priority": 0, "verify_tls": "on", "enabled": "on",
        "health": "unknown", "quotas-TOTAL_FORMS": 0, "quotas-INITIAL_FORMS": 0,
    }  # fmt: skip
    response = client.post(reverse("admin:servers_smtpserver_add"), data)
    assert response.status_code == 200
    assert str(PORT_25_REFUSED) in response.content.decode().replace("&#x27;", "'")
    assert not SmtpServer.objects.exists()
    # A password with a line break (an IMAP LOGIN would end there and the
    # rest be a command) is refused next to the field, as on the tenant's
    # pages; nothing is saved.
    data["port"], data["new_password"] = 465, "secret\r\nX1 DELETE INBOX"
    response = client.post(reverse("admin:servers_smtpserver_add"), data)
    assert response.status_code == 200 and "new_password" in response.context["adminform"].form.errors
    assert not SmtpServer.objects.exists()
    data["new_password"] = "secret"
    assert client.post(reverse("admin:servers_smtpserver_add"), data).status_code == 302


def test_a_record_edited_behind_the_forms_back_is_refused_at_connect_time(saas, tenant_a):
    server = make_server(tenant_a, host="8.8.8.8", port=465)
    with smtp_server() as (controller, handler):
        SmtpServer.objects.filter(pk=server.pk).update(host="127.0.0.1", port=controller.port)
        result = smtp_probe(SmtpServer.objects.get(pk=server.pk))
        assert result.diagnosis.category == "rules"
        assert "loopback" in result.diagnosis.message
        assert [s.name for s in result.steps] == ["Check the settings"]  # never connected
        SmtpServer.objects.filter(pk=server.pk).update(host="8.8.8.8", port=25)
        result = smtp_probe(SmtpServer.objects.get(pk=server.pk))
        assert result.diagnosis.category == "rules" and "port-25" in result.diagnosis.message
        assert handler.received == []


MAILBOX = {"email": "b@acme.test", "protocol": "imap", "host": "8.8.8.8", "port": 993, "security": "ssl",
           "login": "b@acme.test", "password": "pw", "folder": "INBOX", "enabled": "on"}  # fmt: skip


@pytest.mark.parametrize("port", [25, 465, 587])
@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_saas_bounce_mailbox_on_an_smtp_port_is_refused_in_the_model(saas, tenant_a, port, protocol):
    mailbox = BounceMailbox(tenant=tenant_a, protocol=protocol, host="8.8.8.8", port=port, login="b@acme.test")
    with pytest.raises(ValidationError) as exc:
        mailbox.full_clean()
    assert exc.value.message_dict["port"] == [MAILBOX_SMTP_PORT_REFUSED.format(port=port)]
    for fine in (993, 143, 995, 110, 10993):
        mailbox.port = fine
        mailbox.full_clean()


def test_a_saas_bounce_mailbox_on_port_25_is_refused_through_the_form_next_to_the_field(saas, alice):
    response = alice.client.post(reverse("servers:mailbox"), {**MAILBOX, "port": 25, "security": "none"})
    assert response.status_code == 400
    assert response.context["form"].errors["port"] == [MAILBOX_SMTP_PORT_REFUSED.format(port=25)]
    assert b"Port 25 is a port for sending mail (SMTP), not for reading it" in response.content
    assert not BounceMailbox.objects.exists()


def test_a_self_hosted_bounce_mailbox_may_use_any_port(settings, alice, tenant_a):
    settings.DEPLOYMENT_MODE = "self_hosted"
    response = alice.client.post(reverse("servers:mailbox"), {**MAILBOX, "port": 25, "security": "none"})
    assert response.status_code == 302
    assert BounceMailbox.objects.get(tenant=tenant_a).port == 25


def test_a_mailbox_moved_to_port_25_behind_the_forms_back_is_refused_at_connect_time(saas, tenant_a):
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="8.8.8.8", port=993, login="b@acme.test")
    BounceMailbox.objects.filter(pk=mailbox.pk).update(port=25)
    result = mailbox_probe(BounceMailbox.objects.get(pk=mailbox.pk))
    assert result.diagnosis.category == "rules" and "Port 25 is a port for sending mail" in result.diagnosis.message
    assert [s.name for s in result.steps] == ["Check the settings"]  # never connected


@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
def test_a_host_that_mixes_alphabets_in_a_label_is_refused_at_save_naming_the_letter(settings, alice, mode):
    """smtp.yandex.ru with a Cyrillic a (U+0430), pasted from a look-alike
    or typed with the layout switched mid-word, was saved; no registry
    allows such a name, so every test and letter then failed with "could
    not be found (DNS)". The addresses' own rule now refuses it next to the
    field, for the sending server and the bounce mailbox. A name in one
    alphabet a label (smtp.пример.рф) stays allowed."""
    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = True  # no lookup: the name is refused for its spelling
    response = post(alice, host="smtp.y\u0430ndex.ru", kind="external")
    assert response.status_code == 400
    assert (
        "“y\u0430ndex” in the domain mixes letters of different alphabets (“\u0430”, U+0430"
        in (response.context["form"].errors["host"][0])
    )
    response = alice.client.post(reverse("servers:mailbox"), {**MAILBOX, "host": "imap.y\u0430ndex.ru"})
    assert response.status_code == 400 and "U+0430" in response.context["form"].errors["host"][0]
    assert not SmtpServer.objects.exists() and not BounceMailbox.objects.exists()
    response = post(alice, host="smtp.пример.рф", kind="external")
    assert response.status_code == 302, response.context["form"].errors
