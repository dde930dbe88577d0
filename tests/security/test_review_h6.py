"""The web forms attacked as an outsider or a careless tenant would: bad
input is refused next to its field, with what was typed kept."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from mailing.models import Mailing
from servers.forms import PASSWORD_MAX_LENGTH
from servers.models import BounceMailbox, SmtpServer
from tests.mailing.builders import make_list, make_template
from tests.security.test_hostile_input import MAILBOX, SERVER
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def choices(tenant_a) -> dict:
    template = make_template(tenant_a, name="Spring", subject="Hi", text_body="Hi {{ unsubscribe_url }}")
    contacts = make_list(tenant_a, emails=["ann@x.test"])
    server = make_server(tenant_a, name="Own", host="smtp.acme.test", port=465)
    return {"name": "Spring sale", "template": template.pk, "lists": [contacts.pk], "servers": [server.pk]}


def test_a_start_time_in_the_past_is_refused_next_to_the_field_and_the_rest_kept(alice, choices):
    response = alice.client.post(reverse("mailings:new"), {**choices, "scheduled_at": "2001-01-01T10:00"})
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(r'id="id_scheduled_at_error">(.*?)</ul>', html, re.S)
    assert error and "future" in error.group(1)
    assert 'value="Spring sale"' in html and 'value="2001-01-01T10:00"' in html
    assert not Mailing.objects.exists()


def test_a_draft_whose_start_time_has_passed_can_still_be_saved_unchanged(alice, tenant_a, choices):
    alice.client.post(reverse("mailings:new"), {**choices, "scheduled_at": "2099-01-01T10:00"})
    mailing = Mailing.objects.get()
    Mailing.objects.filter(pk=mailing.pk).update(scheduled_at=timezone.now() - timezone.timedelta(hours=1))
    edit = alice.client.get(reverse("mailings:edit", args=[mailing.public_id]))
    shown = re.search(r'name="scheduled_at" value="([^"]+)"', edit.content.decode()).group(1)
    response = alice.client.post(
        reverse("mailings:edit", args=[mailing.public_id]), {**choices, "name": "Renamed", "scheduled_at": shown}
    )
    assert response.status_code == 302
    assert Mailing.objects.get().name == "Renamed"


def test_a_refused_choice_of_lists_names_its_group_not_an_empty_id(alice, tenant_b, choices):
    """A group of checkboxes has no one input to label: its error and help
    text took the ids "_error" and "_helptext", the same for both groups of
    the page, and its label pointed at no element (for="")."""
    foreign = make_list(tenant_b, name="Theirs", emails=["b@x.test"])
    response = alice.client.post(reverse("mailings:new"), {**choices, "lists": [foreign.pk]})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'for=""' not in html and 'id="_' not in html
    error = re.search(r'<ul class="field-errors" id="id_lists_error">(.*?)</ul>', html, re.S)
    assert error and "not one of the available choices" in error.group(1)
    assert 'id="id_servers_helptext"' in html
    assert 'value="Spring sale"' in html


def test_an_external_server_made_internal_needs_no_password_again(alice, tenant_a, settings):
    """Internal SMTP "needs no server, port, login or password", the page
    says; emptying the server name as told asked for the password again (the
    rule for a stored password on its way to a new host), on a server that
    connects to this host's own mail server."""
    settings.DEPLOYMENT_MODE = "self_hosted"
    server = make_server(tenant_a, name="Own", host="smtp.acme.test", port=465, security="ssl")
    data = {"name": "Own", "kind": "internal", "sender_email": "news@acme.test", "host": "", "port": "",
            "security": "none", "login": "", "enabled": "on"}  # fmt: skip
    response = alice.client.post(reverse("servers:edit", args=[server.public_id]), data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    server.refresh_from_db()
    assert server.kind == server.Kind.INTERNAL


def test_an_internal_server_given_a_new_host_still_needs_the_password(alice, tenant_a, settings):
    """Else it could be switched back to external with that host kept, and
    the stored password sent there without being typed."""
    settings.DEPLOYMENT_MODE = "self_hosted"
    server = make_server(tenant_a, name="Own", host="smtp.acme.test", port=465, security="ssl")
    data = {"name": "Own", "kind": "internal", "sender_email": "news@acme.test", "host": "smtp.evil.test",
            "port": "465", "security": "ssl", "login": "news@acme.test", "enabled": "on"}  # fmt: skip
    response = alice.client.post(reverse("servers:edit", args=[server.public_id]), data)
    assert response.status_code == 400
    server.refresh_from_db()
    assert (server.kind, server.host) == (server.Kind.EXTERNAL, "smtp.acme.test")


@pytest.mark.parametrize("form", ["server", "mailbox"])
def test_a_missing_security_is_not_also_a_port_warning(alice, form):
    """No security chosen (a client that sends none) was told it is required
    and, on the tick box, that port 465 (993) "normally uses SSL/TLS": a
    warning about a setting nobody made."""
    url, data = (reverse("servers:add"), SERVER) if form == "server" else (reverse("servers:mailbox"), MAILBOX)
    response = alice.client.post(url, {k: v for k, v in data.items() if k != "security"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_security_error"' in html
    assert 'id="id_accept_warning_error"' not in html and "normally uses" not in html


def test_reading_bounces_with_no_imap_security_is_warned_as_the_ssl_it_gets(alice):
    data = {**SERVER, "read_bounces": "on", "imap_host": "imap.acme.test", "imap_same_password": "on"}
    refused = alice.client.post(reverse("servers:add"), {**data, "imap_port": "143"})
    assert refused.status_code == 400 and "Port 143 normally uses STARTTLS" in refused.content.decode()
    saved = alice.client.post(reverse("servers:add"), {**data, "imap_port": "993"})
    assert saved.status_code == 302


def test_the_imap_password_of_a_server_has_the_passwords_limit(alice):
    """The mailbox form's password and the SMTP password stop at 1,024
    characters; the server form's IMAP password took 3 MB and stored it."""
    data = {**SERVER, "read_bounces": "on", "imap_host": "imap.acme.test", "imap_port": "993",
            "imap_security": "ssl", "imap_password": "x" * (PASSWORD_MAX_LENGTH + 1)}  # fmt: skip
    response = alice.client.post(reverse("servers:add"), data)
    assert response.status_code == 400
    error = re.search(r'id="id_imap_password_error">(.*?)</ul>', response.content.decode(), re.S)
    assert error and f"at most {PASSWORD_MAX_LENGTH} characters" in error.group(1)
    assert not SmtpServer.objects.exists() and not BounceMailbox.objects.exists()


@pytest.mark.parametrize(
    ("url", "data", "field"),
    [
        ("servers:add", SERVER, "password"),
        ("servers:mailbox", MAILBOX, "password"),
        ("servers:add", {**SERVER, "read_bounces": "on", "imap_host": "imap.acme.test", "imap_port": "993"},
         "imap_password"),
    ],
)  # fmt: skip
def test_a_nul_in_a_password_is_named_once_as_what_it_is(alice, url, data, field):
    """It was refused twice: as "a line break" and as a null character."""
    response = alice.client.post(reverse(url), {**data, field: "pass\x00word"})
    assert response.status_code == 400
    error = re.search(rf'id="id_{field}_error">(.*?)</ul>', response.content.decode(), re.S)
    assert error and re.findall(r"<li>(.*?)</li>", error.group(1)) == ["Null characters are not allowed."]
    response = alice.client.post(reverse(url), {**data, field: "pass\r\nword"})
    assert "cannot contain a line break" in response.content.decode()


def test_a_refused_password_on_a_new_host_is_not_also_missing(alice, tenant_a):
    server = make_server(tenant_a, name="Own", host="smtp.acme.test", port=465, security="ssl")
    data = {**SERVER, "host": "smtp.other.test", "password": "x" * (PASSWORD_MAX_LENGTH + 1)}
    response = alice.client.post(reverse("servers:edit", args=[server.public_id]), data)
    error = re.search(r'id="id_password_error">(.*?)</ul>', response.content.decode(), re.S)
    assert error and re.findall(r"<li>(.*?)</li>", error.group(1)) == [
        f"Ensure this value has at most {PASSWORD_MAX_LENGTH} characters (it has {PASSWORD_MAX_LENGTH + 1})."
    ]


def test_a_server_named_twice_in_a_reorder_takes_its_first_place_once(alice, tenant_a, django_assert_max_num_queries):
    """Each mention was a place: [B, A, B] put A first, and a 4 MB body of
    one id repeated made some 100,000 UPDATEs in one transaction."""
    a = make_server(tenant_a, name="A", host="smtp.a.test", port=465, priority=0)
    b = make_server(tenant_a, name="B", host="smtp.b.test", port=465, priority=1)
    order = [str(b.public_id), str(a.public_id)] + [str(b.public_id)] * 500
    with django_assert_max_num_queries(30):
        response = alice.client.post(reverse("servers:reorder"), {"order": order})
    assert response.status_code == 200
    assert list(SmtpServer.objects.order_by("priority").values_list("name", flat=True)) == ["B", "A"]


def test_a_refused_test_address_is_shown_next_to_its_input_and_kept(alice, tenant_a):
    """It was a message at the top of the list, and the address typed was
    gone: the user had to find which server's box and type it again."""
    make_server(tenant_a, name="Other", host="smtp.other.test", port=465)
    server = make_server(tenant_a, name="Own", host="smtp.acme.test", port=465)
    url = reverse("servers:test_start", args=[server.public_id])
    response = alice.client.post(url, {"send_to": "me@"})
    assert response.status_code == 400
    html = response.content.decode()
    box = f"send-to-{server.public_id}"
    field = re.search(rf'<input[^>]*id="{box}"[^>]*>', html).group(0)
    assert 'value="me@"' in field and 'aria-invalid="true"' in field and f'aria-describedby="{box}_error"' in field
    error = re.search(rf'<ul class="field-errors" id="{box}_error">(.*?)</ul>', html, re.S)
    assert error and "<li>" in error.group(1)
    assert html.count('aria-invalid="true"') == 1
