"""Reading a sending server's own mailbox for bounces: one switch on the
server, prefilled from the provider, with the SMTP password (which never
goes to a host of another provider) or one of its own; the same reader,
lease, Processed folder and never-twice guarantees as the bounce mailbox,
but only Postroute's own reports leave its inbox. The pages say, for every
server, where its reports go and whether Postroute reads them."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from mailing import mailings as mailing_services
from mailing.bounces import readers
from mailing.models import BounceReport, Letter, Mailing
from servers import rules
from servers.access import get_mailbox
from servers.models import BounceMailbox, ConnectionTest, Security
from tests.mailing.bounce_helpers import folder_messages, render
from tests.mailing.builders import make_list, make_template

from .factories import make_server

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Yandex",
    "sender_email": "box@yandex.ru",
    "host": "smtp.yandex.ru",
    "port": 465,
    "security": "ssl",
    "login": "box@yandex.ru",
    "password": "smtp-app-password",
    "enabled": "on",
}
READING = {"read_bounces": "on", "imap_host": "imap.yandex.ru", "imap_port": 993, "imap_security": "ssl"}


def add(person, **changes):
    return person.client.post(reverse("servers:add"), {**FORM, **READING, "imap_same_password": "on", **changes})


def test_reading_is_offered_with_the_providers_imap_server(alice):
    form = alice.client.get(reverse("servers:add") + "?preset=yandex").context["form"]
    assert [form.initial[k] for k in ("read_bounces", "imap_host", "imap_port", "imap_security")] == [
        True, "imap.yandex.ru", 993, "ssl",
    ]  # fmt: skip
    assert form.initial["imap_same_password"] is True
    form = alice.client.get(reverse("servers:add") + "?preset=custom").context["form"]
    assert form.initial["read_bounces"] is False


def test_the_server_is_saved_with_its_mailbox_read_with_the_same_login_and_password(alice, tenant_a):
    assert add(alice).status_code == 302
    mailbox = BounceMailbox.objects.get(tenant=tenant_a)
    assert (mailbox.server.name, mailbox.login, mailbox.email, mailbox.host, mailbox.port) == (
        "Yandex", "box@yandex.ru", "box@yandex.ru", "imap.yandex.ru", 993,
    )  # fmt: skip
    assert mailbox.password_encrypted == "" and mailbox.get_password() == "smtp-app-password"
    assert (mailbox.protocol, mailbox.folder, mailbox.plus_addressing) == ("imap", "INBOX", True)
    assert get_mailbox(tenant_a) is None  # not the tenant's bounce mailbox


def test_a_separate_app_password_and_turning_reading_off(alice, tenant_a):
    add(alice, imap_same_password="", imap_password="imap-app-password")
    server = tenant_a.smtp_servers.get()
    assert server.bounce_mailbox.get_password() == "imap-app-password"
    BounceReport.objects.create(tenant=tenant_a, mailbox=server.bounce_mailbox, source_key="k", kind="hard")

    edit = {**FORM, "password": ""}  # the form without the switch: reading off
    assert alice.client.post(reverse("servers:edit", args=[server.public_id]), edit).status_code == 302
    assert not BounceMailbox.objects.exists()
    assert BounceReport.objects.get().mailbox is None  # the reports stay


def test_a_new_smtp_password_ends_the_back_off_of_the_mailbox_that_logs_in_with_it(alice, tenant_a):
    add(alice)
    server = tenant_a.smtp_servers.get()
    BounceMailbox.objects.update(failures=3, next_check_at=timezone.now() + timedelta(hours=2))
    url = reverse("servers:edit", args=[server.public_id])

    alice.client.post(url, {**FORM, **READING, "imap_same_password": "on", "password": ""})  # nothing new
    assert BounceMailbox.objects.get().failures == 3
    alice.client.post(url, {**FORM, **READING, "imap_same_password": "on", "password": "the-fixed-one"})
    mailbox = BounceMailbox.objects.get()
    assert (mailbox.failures, mailbox.next_check_at, mailbox.get_password()) == (0, None, "the-fixed-one")


def test_the_smtp_password_never_goes_to_a_host_of_another_provider(alice, tenant_a):
    response = add(alice, imap_host="imap.evil.example")
    assert response.status_code == 400
    assert response.context["form"].errors["imap_same_password"] == [rules.SHARED_PASSWORD_REFUSED]
    assert not BounceMailbox.objects.exists()
    assert add(alice, imap_host="imap.evil.example", imap_same_password="", imap_password="its-own").status_code == 302


def test_the_smtp_password_of_an_ip_address_goes_to_that_address_only(alice, tenant_a):
    """An address is not a domain: 8.8.8.8 and 9.8.8.8 share "8.8.8" after
    their first label and nothing else (another network, another owner)."""
    response = add(alice, host="8.8.8.8", imap_host="9.8.8.8")
    assert response.status_code == 400
    assert response.context["form"].errors["imap_same_password"] == [rules.SHARED_PASSWORD_REFUSED]
    assert not BounceMailbox.objects.exists()
    assert add(alice, host="8.8.8.8", imap_host="8.8.8.8").status_code == 302


def test_a_new_imap_host_needs_its_password_typed_again(alice, tenant_a):
    add(alice, imap_same_password="", imap_password="imap-app-password")
    server = tenant_a.smtp_servers.get()
    url = reverse("servers:edit", args=[server.public_id])
    response = alice.client.post(url, {**FORM, **READING, "password": "", "imap_host": "imap.elsewhere.example"})
    assert response.status_code == 400 and response.context["form"].errors["imap_password"]
    assert alice.client.post(url, {**FORM, **READING, "password": ""}).status_code == 302  # same host: kept
    assert BounceMailbox.objects.get().get_password() == "imap-app-password"


def test_the_model_refuses_a_shared_password_to_an_unrelated_host_on_every_path(tenant_a):
    server = make_server(tenant_a, host="smtp.corp.example", sender_email="mx@corp.example")
    mailbox = BounceMailbox(tenant=tenant_a, server=server, host="imap.other.example", login="mx@corp.example")
    with pytest.raises(ValidationError) as exc:
        mailbox.full_clean()
    assert exc.value.message_dict["host"] == [rules.SHARED_PASSWORD_REFUSED]
    mailbox.host = "imap.corp.example"
    mailbox.full_clean()
    other = make_server(None, name="Platform")
    with pytest.raises(ValidationError):
        BounceMailbox(tenant=tenant_a, server=other, host="imap.corp.example", login="x").full_clean()


@pytest.mark.parametrize(
    ("smtp", "imap", "shared"),
    [
        ("smtp.yandex.ru", "imap.yandex.ru", True),
        ("smtp-mail.outlook.com", "outlook.office365.com", True),
        ("smtp.gmail.com", "imap.yandex.ru", False),
        ("smtp.corp.example", "imap.corp.example", True),
        ("mail.corp.example", "mail.corp.example", True),
        ("smtp.corp.example", "imap.corp.example.evil.test", False),
        ("corp.example", "imap.corp.example", False),
        ("", "imap.corp.example", False),
        ("203.0.113.7", "9.0.113.7", False),
        ("203.0.113.7", "imap.0.113.7", False),
        ("smtp.0.113.7", "203.0.113.7", False),
        ("203.0.113.7", "203.0.113.7.", True),
        ("[2001:db8::1]", "2001:db8::1", True),
        ("2001:db8::1", "2001:db8::2", False),
        ("010.0.113.7", "011.0.113.7", False),
        ("0x8.8.8.8", "0x9.8.8.8", False),
        # A company's own domain right under a public suffix: another
        # company's host under the same suffix is not the same domain.
        ("company.com.vn", "attacker.com.vn", False),
        ("company.co.uk", "imap.co.uk", False),
        ("corp.msk.ru", "evil.msk.ru", False),
        ("corp.com.ru", "evil.com.ru", False),
        ("tenant.github.io", "attacker.github.io", False),
        ("smtp.company.com.vn", "imap.company.com.vn", True),
        ("mail.corp.msk.ru", "imap.corp.msk.ru", True),
        ("smtp.ПРИМЕР.рф", "imap.пример.рф", True),
        ("пример.рф", "evil.рф", False),
    ],
)
def test_which_incoming_servers_may_get_the_smtp_password(smtp, imap, shared):
    assert rules.may_share_password(smtp, imap) is shared


def test_pages_say_where_each_servers_reports_go(alice, tenant_a):
    read = make_server(tenant_a, name="Read", sender_email="box@yandex.ru", host="smtp.yandex.ru")
    BounceMailbox.objects.create(tenant=tenant_a, server=read, host="imap.yandex.ru", login="box@yandex.ru")
    unread = make_server(tenant_a, name="Unread", sender_email="box@mail.ru", priority=1)

    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "read by Postroute (this mailbox)" in page
    assert "Its delivery reports go to box@mail.ru, which Postroute does not read" in page

    bounces = alice.client.get(reverse("bounces:unmatched"))
    assert [(s.name, r.read) for s, r in bounces.context["routes"]] == [("Read", True), ("Unread", False)]

    mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
    mailing_services.mailing_save(mailing=mailing, lists=[make_list(tenant_a)], servers=[read, unread])
    detail = alice.client.get(reverse("mailings:detail", args=[mailing.public_id]))
    assert [s.name for s in detail.context["unread_reports"]] == ["Unread"]
    assert "go to a mailbox Postroute does not read" in detail.content.decode()

    BounceMailbox.objects.create(tenant=tenant_a, server=unread, host="imap.mail.ru", login="box@mail.ru")
    detail = alice.client.get(reverse("mailings:detail", args=[mailing.public_id]))
    assert detail.context["unread_reports"] == []
    assert "go to a mailbox Postroute does not read" not in detail.content.decode()


def test_its_mailbox_has_its_own_connection_test_and_outsiders_get_404(alice, charlie, tenant_a, monkeypatch):
    monkeypatch.setattr("servers.tasks.run_connection_test.delay", lambda test_id: None)
    add(alice)
    server = tenant_a.smtp_servers.get()
    url = reverse("servers:server_mailbox_test", args=[server.public_id])
    assert charlie.client.post(url).status_code == 404
    assert alice.client.post(url).status_code == 302
    assert ConnectionTest.objects.get().mailbox == server.bounce_mailbox


# ---------- reading it, on the real Dovecot ----------


def append_at(dovecot, raw: bytes, when) -> None:
    client = dovecot.imap_client()
    try:
        assert client.append("INBOX", None, when, raw)[0] == "OK"
    finally:
        client.logout()


def read_sending_mailbox(tenant, box, emails: list[str]) -> tuple[BounceMailbox, Mailing]:
    """A server whose own mailbox (on the test Dovecot) is read, and a
    mailing through it whose letters to `emails` went out just now."""
    server = make_server(tenant, host="127.0.0.1", sender_email=box.user, login=box.user, password=box.password)
    mailbox = BounceMailbox(
        tenant=tenant, server=server, host="127.0.0.1", port=box.imap_port, security=Security.NONE, login=box.user
    )
    mailbox.save()  # no password of its own: the server's
    contact_list = make_list(tenant, "L", emails)
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    mailing_services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    mailing_services.mailing_start(mailing=mailing)
    Letter.objects.filter(mailing=mailing).update(status=Letter.Status.SENT, sent_at=timezone.now())
    return mailbox, mailing


def test_the_sending_mailbox_is_read_and_only_our_reports_leave_its_inbox(tenant_a, dovecot_mailbox):
    box = dovecot_mailbox
    mailbox, mailing = read_sending_mailbox(tenant_a, box, ["gone@example.org", "old@example.org", "jane@example.org"])
    gone, jane, old = (
        Letter.objects.get(mailing=mailing, email=e)
        for e in ("gone@example.org", "jane@example.org", "old@example.org")
    )
    now = timezone.now()
    append_at(box, render("postfix_user_unknown.eml", gone), now)
    append_at(box, render("human_reply.eml", jane), now)  # the owner's mail
    append_at(box, render("gmail_account_does_not_exist.eml", recipient="someone@elsewhere.example"), now)  # theirs
    append_at(box, render("exim_user_unknown.eml", old), now - timedelta(days=10))  # before reading was on

    result = readers.read_mailbox(mailbox_id=mailbox.pk)
    again = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports, result.left_alone) == ("done", 1, 2), result.error
    assert (again.reports, again.left_alone) == (0, 0)
    assert [(r.letter, r.kind) for r in BounceReport.objects.all()] == [(gone, "hard")]
    inbox = folder_messages(box, "INBOX")
    assert len(inbox) == 3 and all("\\Seen" not in flags for _, flags in inbox)
    assert len(folder_messages(box, "Postroute.Processed")) == 1
    old.refresh_from_db()
    assert old.status == Letter.Status.SENT


def test_the_owners_own_bounce_for_an_address_we_mailed_too_stays_in_its_inbox(tenant_a, dovecot_mailbox):
    """The owner wrote to jane@ themselves as well; the bounce of their
    letter quotes nothing of ours, only the address. That the tenant mailed
    jane@ this week does not make it a report about our letter (it would
    be unconfirmed in the bounce mailbox): in a person's mailbox it stays
    where it is, unseen, and nothing is recorded."""
    box = dovecot_mailbox
    mailbox, _mailing = read_sending_mailbox(tenant_a, box, ["jane@example.org"])
    append_at(box, render("minimal_dsn_no_original.eml", recipient="jane@example.org"), timezone.now())

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    # Before the fix: recorded as unconfirmed for our letter to jane@ and moved to Postroute/Processed.
    assert (result.status, result.reports, result.left_alone) == ("done", 0, 1), result.error
    assert not BounceReport.objects.exists()
    [(_subject, flags)] = folder_messages(box, "INBOX")
    assert "\\Seen" not in flags
    assert folder_messages(box, "Postroute.Processed") == []
