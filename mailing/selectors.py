from accounts.models import Tenant


# Templates, contacts and mailings arrive with issue #4; until then none exist.
def has_template(tenant: Tenant) -> bool:
    return False


def has_contacts(tenant: Tenant) -> bool:
    return False


def has_started_mailing(tenant: Tenant) -> bool:
    return False
