from django.db.models import QuerySet

from accounts.models import Tenant


# Templates, contacts and mailings arrive with issue #4; until then none exist.
def has_template(tenant: Tenant) -> bool:
    return False


def has_contacts(tenant: Tenant) -> bool:
    return False


def has_started_mailing(tenant: Tenant) -> bool:
    return False


def active_mailings_using(server: object) -> QuerySet | list:
    """Active or waiting mailings allowed to send through `server`."""
    return []
