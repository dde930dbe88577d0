"""Builders for the end-to-end tests: a tenant server on the test Postfix's
submission port, a started mailing, and the dispatch run until it settles."""

from accounts.models import Tenant
from mailing import mailings as services
from mailing.models import Letter, Mailing
from servers.models import Security, SmtpServer
from tests.mailing.builders import make_list, make_template, run_until_settled
from tests.postfix import PostfixServer
from tests.servers.factories import make_server

__all__ = ["assert_delivered_once", "letters_by_email", "run_until_settled", "start_mailing", "submission_server"]


def submission_server(tenant: Tenant, mta: PostfixServer, **fields: object) -> SmtpServer:
    """The tenant's server: Postfix's submission port, by name so TLS checks
    "localhost", logging in as the bounce mailbox, which is also the sender
    (the envelope sender is where Postfix returns its DSNs)."""
    values = {
        "name": "Postfix",
        "host": "localhost",
        "port": mta.submission_port,
        "security": Security.STARTTLS,
        "login": mta.login,
        "password": mta.password,
        "sender_email": mta.login,
        **fields,
    }
    return make_server(tenant, **values)


def start_mailing(tenant: Tenant, server: SmtpServer, emails: list[str], **template: object) -> Mailing:
    contact_list = make_list(tenant, "Postfix list", emails)
    mailing = Mailing(tenant=tenant, name="Through Postfix", template=make_template(tenant, **template))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    services.mailing_start(mailing=mailing)
    return mailing


def letters_by_email(mailing: Mailing) -> dict[str, Letter]:
    return {letter.email: letter for letter in Letter.objects.filter(mailing=mailing)}


def assert_delivered_once(mta: PostfixServer, letters: list[Letter]) -> None:
    for letter in letters:
        [delivered] = mta.messages(letter.email)  # exactly one file in the Maildir
        assert delivered["X-Postroute-Letter"] == str(letter.public_id)
        assert delivered["Delivered-To"] == letter.email
        assert "with ESMTPSA" in delivered.get_all("Received")[-1]  # over TLS, logged in
