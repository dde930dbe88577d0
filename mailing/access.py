"""One access helper per tenant-owned model of this app: the request's
tenant and the public id give the object, or 404."""

from django.shortcuts import get_object_or_404

from accounts.models import Tenant

from .models import Contact, ContactImport, ContactList, Mailing, MailTemplate


def get_contact_list(tenant: Tenant, public_id: object) -> ContactList:
    return get_object_or_404(ContactList, tenant=tenant, public_id=public_id)


def get_contact(tenant: Tenant, public_id: object) -> Contact:
    return get_object_or_404(Contact, tenant=tenant, public_id=public_id)


def get_contact_import(tenant: Tenant, public_id: object) -> ContactImport:
    return get_object_or_404(ContactImport, tenant=tenant, public_id=public_id)


def get_template(tenant: Tenant, public_id: object) -> MailTemplate:
    return get_object_or_404(MailTemplate, tenant=tenant, public_id=public_id)


def get_mailing(tenant: Tenant, public_id: object) -> Mailing:
    return get_object_or_404(Mailing, tenant=tenant, public_id=public_id)
