"""Small builders for mailing data."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Tenant
from mailing import dispatch
from mailing.models import Contact, ContactList, Mailing, MailTemplate, Suppression
from mailing.sink import SinkHandler
from servers.models import SmtpServer
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server


def make_list(tenant: Tenant, name: str = "Customers", emails: list[str] | None = None) -> ContactList:
    contact_list = ContactList.objects.create(tenant=tenant, name=name)
    for email in emails or []:
        contact, _ = Contact.objects.get_or_create(tenant=tenant, email=email, defaults={"first_name": email[:3]})
        contact.lists.add(contact_list)
    return contact_list


def make_template(tenant: Tenant, **fields: object) -> MailTemplate:
    values = {
        "name": "Newsletter",
        "subject": "Hello {{ first_name }}",
        "text_body": "Hi {{ first_name }}! Unsubscribe: {{ unsubscribe_url }}",
        "html_body": "<p>Hi {{ first_name }}</p>",
        **fields,
    }
    return MailTemplate.objects.create(tenant=tenant, **values)


def suppress(tenant: Tenant, email: str) -> Suppression:
    return Suppression.objects.create(tenant=tenant, email=email, reason=Suppression.Reason.MANUAL)


def run_until_settled(mailing: Mailing, now: datetime | None = None, *, rounds: int = 1000) -> str:
    """Run the dispatcher on `mailing` at `now` (the real clock when None)
    until it has nothing more to send right away; its last answer."""
    for _ in range(rounds):
        result = dispatch.run_mailing(mailing_id=mailing.pk, now=now or timezone.now())
        if result != "more":
            return result
    raise AssertionError("never settled")


def from_the_reply(value: datetime, expected: datetime) -> bool:
    """A wait the dispatcher decided at a reply: `expected` counts from the
    `now` a test gave it, and the batch's clock moved on since (by the
    milliseconds its letters took), never back."""
    return expected <= value <= expected + timedelta(seconds=5)


Made = list[tuple[SmtpServer, SinkHandler]]


@contextmanager
def servers_in_order(tenant: Tenant, *options: dict, **fields: object) -> Iterator[Made]:
    """Real aiosmtpd servers, one for each of `options` (smtp_server's: a
    handler, enable_SMTPUTF8, data_size_limit; and the server's `name`),
    made the tenant's servers in that order, each with `fields`; each
    server with its handler."""
    with ExitStack() as stack:
        made = []
        for position, option in enumerate(options, 1):
            option = dict(option)
            name = option.pop("name", f"Server {position}")
            controller, handler = stack.enter_context(smtp_server(**option))
            server = make_server(tenant, port=controller.port, name=name, priority=position, **fields)
            made.append((server, handler))
        yield made
