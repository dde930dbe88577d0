"""Small builders for mailing data."""

from accounts.models import Tenant
from mailing.models import Contact, ContactList, MailTemplate, Suppression


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
