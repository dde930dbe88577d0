"""Contacts, lists, custom fields, the suppression list and unsubscribing:
the writes, and the few reads the pages need. Every function is given the
tenant, or objects that belong to one, so no query crosses tenants."""

import re
import unicodedata
from collections.abc import Iterable, Mapping

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from accounts.models import Tenant
from servers.addresses import checked_address

from . import events
from . import unsubscribe as tokens
from .models import Contact, ContactImport, ContactList, CustomField, Mailing, Suppression
from .rendering import STANDARD_NAMES, UNSUBSCRIBE
from .withdrawals import withdraw_queued_letters

# Names templates already give a meaning to; a custom field may not take them.
RESERVED_KEYS = frozenset({*STANDARD_NAMES, UNSUBSCRIBE})
KEY = re.compile(r"[a-z][a-z0-9_]{0,49}")
MAX_NAME_LENGTH = Contact._meta.get_field("first_name").max_length
MAX_VALUE_LENGTH = 1000  # one custom field value
MAX_SEARCH_WORDS = 5

# Russian column names must give readable placeholder names, not "field".
_LATIN = "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya i yi ye g"
CYRILLIC = {
    cyr: lat.strip("-") for cyr, lat in zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ", _LATIN.split(), strict=True)
}


class BadUnsubscribeLink(Exception):
    """The token was tampered with, or names a tenant that no longer exists."""


def normalize_email(address: str) -> str:
    """The form an address is stored and compared in, if this installation
    may mail it (servers.addresses). Raises ValidationError."""
    return checked_address(address)


def _normalized_or_raw(address: str) -> str:
    try:
        return normalize_email(address)
    except ValidationError:
        return address.strip()


# ---------- Contacts ----------


def contact_create(
    *,
    tenant: Tenant,
    email: str,
    first_name: str = "",
    last_name: str = "",
    fields: Mapping[str, str] | None = None,
    lists: Iterable[ContactList] = (),
) -> Contact:
    contact = Contact(tenant=tenant)
    return _contact_save(contact, email, first_name, last_name, fields or {}, list(lists))


def contact_update(
    *,
    contact: Contact,
    email: str,
    first_name: str,
    last_name: str,
    fields: Mapping[str, str],
    lists: Iterable[ContactList],
) -> Contact:
    return _contact_save(contact, email, first_name, last_name, fields, list(lists))


@transaction.atomic
def _contact_save(
    contact: Contact, email: str, first_name: str, last_name: str, fields: Mapping[str, str], lists: list
) -> Contact:
    try:
        contact.email = normalize_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from exc
    contact.first_name, contact.last_name = composed(first_name), composed(last_name)
    contact.fields = _merge_custom_values(contact, fields)
    if any(lst.tenant_id != contact.tenant_id for lst in lists):
        raise ValidationError(_("A contact can only be in its own organisation's lists."))
    taken = Contact.objects.filter(tenant_id=contact.tenant_id, email=contact.email).exclude(pk=contact.pk)
    if taken.exists():
        raise ValidationError({"email": _("A contact with this address already exists.")})
    # The address was checked above with email-validator, which (unlike
    # Django's EmailField) accepts internationalised mailboxes.
    contact.full_clean(exclude=["email", "lists"], validate_constraints=False)
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:  # added by someone else a moment ago
        raise ValidationError({"email": _("A contact with this address already exists.")}) from exc
    contact.lists.set(lists)
    return contact


def _merge_custom_values(contact: Contact, values: Mapping[str, str]) -> dict[str, str]:
    """The tenant's defined fields from `values` (empty ones dropped); values
    of keys no longer defined stay as they were."""
    defined = set(CustomField.objects.filter(tenant_id=contact.tenant_id).values_list("key", flat=True))
    kept = {k: v for k, v in (contact.fields or {}).items() if k not in defined}
    new = {k: composed(str(v)) for k, v in values.items() if k in defined and str(v).strip()}
    if too_long := sorted(k for k, v in new.items() if len(v) > MAX_VALUE_LENGTH):
        names = ", ".join(too_long)
        raise ValidationError(
            _("Custom field values are limited to %(MAX_VALUE_LENGTH)s characters: %(names)s.")
            % {"MAX_VALUE_LENGTH": MAX_VALUE_LENGTH, "names": names}
        )
    return {**kept, **new}


def composed(text: str) -> str:
    """Stored and searched as NFC, as imports store cells: a Mac or a
    Vietnamese keyboard may send "ễ" as "e" and two combining marks, and
    a search typed composed would not find it."""
    return unicodedata.normalize("NFC", text.strip())


def contact_delete(*, contact: Contact) -> None:
    contact.delete()


# ---------- Lists ----------


def list_create(*, tenant: Tenant, name: str) -> ContactList:
    contact_list = ContactList(tenant=tenant)
    return _list_save(contact_list, name)


def list_rename(*, contact_list: ContactList, name: str) -> ContactList:
    return _list_save(contact_list, name)


def _list_save(contact_list: ContactList, name: str) -> ContactList:
    contact_list.name = " ".join(name.split())
    if not contact_list.name:
        raise ValidationError({"name": _("Give the list a name.")})
    taken = ValidationError({"name": _("There is already a list named “%(name)s”.") % {"name": contact_list.name}})
    same = ContactList.objects.filter(tenant_id=contact_list.tenant_id, name__iexact=contact_list.name)
    if same.exclude(pk=contact_list.pk).exists():
        raise taken
    contact_list.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            contact_list.save()
    except IntegrityError as exc:  # made by someone else a moment ago
        raise taken from exc
    return contact_list


def list_delete(*, contact_list: ContactList) -> None:
    """Delete the list; its contacts stay (they may be in other lists, and
    the tenant still sees them under All contacts). A list that a mailing
    has not yet started from, or an import is filling, is kept."""
    waiting = contact_list.mailings.filter(status__in=[Mailing.Status.DRAFT, Mailing.Status.SCHEDULED])
    if names := ", ".join(f"«{m.name}»" for m in waiting[:5]):
        raise ValidationError(
            _("Mailings that have not started yet use this list: %(names)s. Change them first.") % {"names": names}
        )
    importing = ContactImport.Status.QUEUED, ContactImport.Status.RUNNING
    if ContactImport.objects.filter(contact_list=contact_list, status__in=importing).exists():
        raise ValidationError(_("An import into this list is running. Wait until it ends."))
    contact_list.delete()


def lists_with_counts(tenant: Tenant) -> QuerySet[ContactList]:
    return ContactList.objects.filter(tenant=tenant).annotate(contact_count=Count("contacts"))


def contacts_search(*, tenant: Tenant, contact_list: ContactList | None = None, query: str = "") -> QuerySet[Contact]:
    """Contacts whose address or name contains every word of `query`, each
    marked `suppressed` when the address is on the suppression list."""
    contacts = Contact.objects.filter(tenant=tenant)
    if contact_list is not None:
        contacts = contacts.filter(lists=contact_list)
    for word in composed(query).split()[:MAX_SEARCH_WORDS]:
        contacts = contacts.filter(
            Q(email__icontains=word) | Q(first_name__icontains=word) | Q(last_name__icontains=word)
        )
    suppressed = Suppression.objects.of(tenant.pk, OuterRef("email"))
    return contacts.annotate(suppressed=Exists(suppressed)).order_by("email")


# ---------- Custom fields ----------


def field_key(label: str) -> str:
    """A placeholder name from a column header or label: “Компания” →
    kompaniya, “Phone #2” → phone_2. Always matches KEY."""
    text = "".join(CYRILLIC.get(ch, ch) for ch in label.lower())
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", text).strip("_") or "field"
    if not key[0].isalpha():
        key = f"f_{key}"
    key = key[:50].rstrip("_")
    return f"{key[:43]}_custom" if key in RESERVED_KEYS else key


def custom_field_create(*, tenant: Tenant, label: str, key: str = "") -> CustomField:
    label = " ".join(label.split())
    key = key.strip() or field_key(label)
    if not KEY.fullmatch(key):
        raise ValidationError({"key": _("Use lower-case Latin letters, digits and _, starting with a letter.")})
    if key in RESERVED_KEYS:
        raise ValidationError({"key": _("“%(key)s” is a standard field already.") % {"key": key}})
    taken = ValidationError({"key": _("There is already a field {{ %(key)s }}.") % {"key": key}})
    if CustomField.objects.filter(tenant=tenant, key=key).exists():
        raise taken
    try:
        with transaction.atomic():
            return CustomField.objects.create(tenant=tenant, key=key, label=label[:100] or key)
    except IntegrityError as exc:  # made by someone else a moment ago
        raise taken from exc


def custom_field_for_header(*, tenant: Tenant, header: str) -> CustomField:
    """The field a CSV column named `header` goes into: an existing one with
    the same key, or a new one."""
    key = field_key(header)
    label = " ".join(header.split())[:100] or key
    field, _ = CustomField.objects.get_or_create(tenant=tenant, key=key, defaults={"label": label})
    return field


def custom_field_for_key(*, tenant: Tenant, key: str) -> CustomField:
    """The field of a placeholder name given as it is (a valid KEY, not a
    standard one): the existing one, or a new one labelled with the key.
    Not custom_field_for_header: a header's key is made anew, and a_b is
    not a__b."""
    field, _ = CustomField.objects.get_or_create(tenant=tenant, key=key, defaults={"label": key})
    return field


# ---------- Suppression ----------


def suppression_add(*, tenant: Tenant, email: str, reason: str, note: str = "") -> Suppression:
    """Suppress a valid address (idempotent: an address already listed keeps
    its first reason). Raises ValidationError for an invalid address."""
    try:
        address = normalize_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from exc
    return _suppress(tenant, address, reason, note)


def _suppress(tenant: Tenant, email: str, reason: str, note: str) -> Suppression:
    return _suppress_new(tenant, email, reason, note)[0]


def _suppress_new(tenant: Tenant, email: str, reason: str, note: str) -> tuple[Suppression, bool]:
    """Every suppression comes here: the address is listed and its letters
    still queued in running mailings leave the queue, together. An address
    listed already is withdrawn again (nothing, unless a start made its
    letters while it was being suppressed)."""
    with transaction.atomic():
        # Listed already in another case: that row stands (Suppression.objects.of).
        listed = Suppression.objects.of(tenant.pk, email).exclude(email=email).order_by("pk").first()
        suppression, new = (
            (listed, False)
            if listed
            else Suppression.objects.get_or_create(
                tenant=tenant, email=email, defaults={"reason": reason, "note": note[:300]}
            )
        )
        withdraw_queued_letters(tenant_id=tenant.pk, emails=[email], reason=suppression.reason)
    return suppression, new


def suppression_remove(*, tenant: Tenant, email: str) -> bool:
    """The address leaves the list, in whatever case it was listed."""
    deleted, _ = Suppression.objects.of(tenant.pk, _normalized_or_raw(email)).delete()
    return deleted > 0


def is_suppressed(tenant: Tenant, email: str) -> bool:
    """Listed in any case (Suppression.objects.of)."""
    return Suppression.objects.of(tenant.pk, _normalized_or_raw(email)).exists()


def suppressions_search(*, tenant: Tenant, query: str = "") -> QuerySet[Suppression]:
    suppressions = Suppression.objects.filter(tenant=tenant)
    for word in composed(query).split()[:MAX_SEARCH_WORDS]:
        suppressions = suppressions.filter(Q(email__icontains=word) | Q(note__icontains=word))
    return suppressions.order_by("-created_at", "-pk")


# ---------- Unsubscribe ----------


def unsubscribe_target(*, token: str) -> tuple[Tenant, str]:
    """The tenant and address a link from a letter stands for."""
    try:
        tenant_id, email = tokens.read_token(token)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadUnsubscribeLink from exc
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise BadUnsubscribeLink
    return tenant, email


def unsubscribe(*, token: str) -> Suppression:
    """Suppress the address the token was made for, in its tenant only.
    The address came from our own letter: it is suppressed as it is even if
    it no longer passes validation, so an unsubscribe never fails."""
    tenant, email = unsubscribe_target(token=token)
    address = _normalized_or_raw(email)
    suppression, new = _suppress_new(tenant, address, Suppression.Reason.UNSUBSCRIBED, _("Unsubscribe link"))
    if new:  # a second click, or an address suppressed before, is no news
        events.contact_unsubscribed(suppression)
    return suppression
