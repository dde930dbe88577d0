"""Contact services: normalisation, one address per tenant, lists and
custom fields."""

import unicodedata

import pytest
from django.core.exceptions import ValidationError

from mailing import contacts
from mailing.models import Contact, ContactImport, ContactList, CustomField, Mailing
from tests.mailing.builders import make_list, make_template

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("John.Smith@Example.COM", "John.Smith@example.com"),
        ("  ann@example.com ", "ann@example.com"),
        ("дмитрий@Пример.РФ", "дмитрий@пример.рф"),
    ],
)
def test_addresses_are_normalised_domain_lower_local_part_kept(raw, normalized):
    assert contacts.normalize_email(raw) == normalized


@pytest.mark.parametrize("raw", ["", "plain", "a@b", "a b@example.com", "a@@example.com", "x@localhost"])
def test_invalid_addresses_are_refused(raw):
    with pytest.raises(ValidationError):
        contacts.normalize_email(raw)


def test_an_address_is_unique_per_tenant_after_normalisation(tenant_a, tenant_b):
    contacts.contact_create(tenant=tenant_a, email="Ann@Example.com")
    with pytest.raises(ValidationError) as exc:
        contacts.contact_create(tenant=tenant_a, email="Ann@EXAMPLE.COM")
    assert exc.value.message_dict == {"email": ["A contact with this address already exists."]}
    contacts.contact_create(tenant=tenant_b, email="Ann@example.com")  # another tenant: fine
    contacts.contact_create(tenant=tenant_a, email="ann@example.com")  # another local part: another address
    assert Contact.objects.filter(tenant=tenant_a).count() == 2


def test_updating_keeps_custom_values_and_refuses_foreign_lists(tenant_a, tenant_b):
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    own, foreign = make_list(tenant_a, "Own"), make_list(tenant_b, "Theirs")
    contact = contacts.contact_create(
        tenant=tenant_a, email="a@example.com", fields={"city": " Riga ", "unknown": "x"}, lists=[own]
    )
    assert contact.fields == {"city": "Riga"}
    contacts.contact_update(
        contact=contact, email="a@example.com", first_name="A", last_name="", fields={"city": ""}, lists=[]
    )
    contact.refresh_from_db()
    assert contact.fields == {} and contact.first_name == "A" and not contact.lists.exists()
    with pytest.raises(ValidationError):
        contacts.contact_update(
            contact=contact, email="a@example.com", first_name="", last_name="", fields={}, lists=[foreign]
        )
    assert not contact.lists.exists()


def test_list_names_are_unique_per_tenant_ignoring_case(tenant_a, tenant_b):
    contacts.list_create(tenant=tenant_a, name="  Customers  2025 ")
    assert ContactList.objects.get().name == "Customers 2025"
    with pytest.raises(ValidationError):
        contacts.list_create(tenant=tenant_a, name="customers 2025")
    with pytest.raises(ValidationError):
        contacts.list_create(tenant=tenant_a, name="   ")
    contacts.list_create(tenant=tenant_b, name="Customers 2025")


def test_deleting_a_list_keeps_its_contacts(tenant_a):
    customers = make_list(tenant_a, emails=["a@example.com", "b@example.com"])
    contacts.list_delete(contact_list=customers)
    assert Contact.objects.filter(tenant=tenant_a).count() == 2 and not ContactList.objects.exists()


def test_a_list_a_waiting_mailing_or_a_running_import_uses_is_kept(tenant_a):
    customers = make_list(tenant_a, emails=["a@example.com"])
    mailing = Mailing.objects.create(tenant=tenant_a, name="Spring sale", template=make_template(tenant_a))
    mailing.lists.add(customers)
    with pytest.raises(ValidationError, match="Spring sale"):
        contacts.list_delete(contact_list=customers)
    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.COMPLETED)
    imp = ContactImport.objects.create(tenant=tenant_a, contact_list=customers, status=ContactImport.Status.RUNNING)
    with pytest.raises(ValidationError, match="import"):
        contacts.list_delete(contact_list=customers)
    ContactImport.objects.filter(pk=imp.pk).update(status=ContactImport.Status.DONE)
    contacts.list_delete(contact_list=customers)


@pytest.mark.parametrize(
    "label, key",
    [
        ("Company", "company"),
        ("Компания", "kompaniya"),
        ("Город проживания", "gorod_prozhivaniya"),
        ("Phone #2", "phone_2"),
        ("2nd address", "f_2nd_address"),
        ("Email", "email_custom"),
        ("Unsubscribe URL", "unsubscribe_url_custom"),
        ("!!!", "field"),
    ],
)
def test_field_keys_are_valid_placeholder_names(label, key):
    assert contacts.field_key(label) == key
    assert contacts.KEY.fullmatch(key) and key not in contacts.RESERVED_KEYS


def test_custom_fields_refuse_bad_and_taken_keys(tenant_a):
    assert contacts.custom_field_create(tenant=tenant_a, label="Company").key == "company"
    for key in ("company", "first_name", "Bad-Key", "_x"):
        with pytest.raises(ValidationError):
            contacts.custom_field_create(tenant=tenant_a, label="Whatever", key=key)


def test_search_matches_every_word_in_address_or_name(tenant_a, tenant_b):
    contacts.contact_create(tenant=tenant_a, email="ann@example.com", first_name="Ann", last_name="Lee")
    contacts.contact_create(tenant=tenant_a, email="bob@example.com", first_name="Bob", last_name="Lee")
    contacts.contact_create(tenant=tenant_b, email="ann.lee@example.com", first_name="Ann", last_name="Lee")

    def found(query: str) -> list[str]:
        return [c.email for c in contacts.contacts_search(tenant=tenant_a, query=query)]

    assert found("lee") == ["ann@example.com", "bob@example.com"]
    assert found("ann lee") == ["ann@example.com"]
    assert found("BOB@") == ["bob@example.com"]
    assert found("nobody") == []


def test_names_and_fields_typed_decomposed_are_stored_and_found_composed(tenant_a):
    """A Mac or a Vietnamese keyboard (Unikey's combining mode) may send "ễ"
    as "e" and two combining marks: stored so, a search typed composed did
    not find "Nguyễn", nor a search typed decomposed a composed "Lê"."""
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    nfd = unicodedata.normalize("NFD", "Nguyễn")
    assert nfd != "Nguyễn"
    contact = contacts.contact_create(
        tenant=tenant_a, email="m@example.com", first_name="Lê", last_name=nfd, fields={"city": f" {nfd} "}
    )
    contact.refresh_from_db()
    assert (contact.last_name, contact.fields["city"]) == ("Nguyễn", "Nguyễn")

    def found(query: str) -> list[str]:
        return [c.email for c in contacts.contacts_search(tenant=tenant_a, query=query)]

    assert found("nguyễn") == ["m@example.com"]
    assert found(unicodedata.normalize("NFD", "lê")) == ["m@example.com"]


def test_a_field_key_taken_by_a_racing_request_is_a_refusal_not_a_500(tenant_a, monkeypatch):
    """Both requests passed the check for the key; the other saved first."""
    real = CustomField.objects.filter

    def other_request_first(*args, **kwargs):
        found = real(*args, **kwargs)
        if kwargs.get("key") == "company" and not real(tenant=tenant_a, key="company").exists():
            CustomField.objects.create(tenant=tenant_a, key="company", label="Company")
            return real(pk=None)
        return found

    monkeypatch.setattr(CustomField.objects, "filter", other_request_first)
    with pytest.raises(ValidationError) as exc:
        contacts.custom_field_create(tenant=tenant_a, label="Company")
    assert exc.value.message_dict == {"key": ["There is already a field {{ company }}."]}
