"""A list's name is unique in its organisation in any case, by the
database's own constraint: two racing requests cannot store "Clients" and
"clients", and the one that loses is told so, on the page and by the API."""

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.urls import reverse

from mailing.models import ContactList

pytestmark = pytest.mark.django_db

migration = importlib.import_module("mailing.migrations.0022_contact_list_name_any_case")


@pytest.fixture
def another_request_makes_it_in_other_case(monkeypatch):
    """The other request saves "clients" between this one's check and its save."""
    checked = ContactList.full_clean

    def other_request_first(self, *args, **kwargs):
        checked(self, *args, **kwargs)
        ContactList.objects.create(tenant=self.tenant, name=self.name.lower())

    monkeypatch.setattr(ContactList, "full_clean", other_request_first)


def test_the_database_refuses_a_name_that_differs_only_in_case(tenant_a, tenant_b):
    ContactList.objects.create(tenant=tenant_a, name="Clients")
    ContactList.objects.create(tenant=tenant_b, name="clients")  # another organisation's
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactList.objects.create(tenant=tenant_a, name="clients")


def test_the_page_tells_the_loser_of_a_race_next_to_the_field(carol, tenant_a, another_request_makes_it_in_other_case):
    response = carol.client.post(reverse("contacts:list_create"), {"name": "Clients"})
    assert response.status_code == 400
    assert response.context["list_form"].errors["name"] == ["There is already a list named “Clients”."]
    assert list(ContactList.objects.filter(tenant=tenant_a).values_list("name", flat=True)) == ["clients"]


def test_the_migration_renames_the_later_of_names_that_differ_only_in_case():
    names = ["Clients", "Leads", "clients", "CLIENTS", "Clients (2)", "x" * 120, "X" * 120]
    assert migration.renamed(names, 120) == {
        2: "clients (3)",  # "Clients (2)" is taken
        3: "CLIENTS (4)",
        6: "X" * 116 + " (2)",  # cut to fit
    }
    assert migration.renamed(["A", "b"], 120) == {}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="drops a constraint inside the test's transaction")
def test_the_migration_renames_the_stored_duplicates_of_each_organisation(tenant_a, tenant_b):
    with connection.schema_editor() as editor:
        editor.remove_constraint(ContactList, ContactList._meta.constraints[0])
    first = ContactList.objects.create(tenant=tenant_a, name="Clients")
    second = ContactList.objects.create(tenant=tenant_a, name="clients")
    other = ContactList.objects.create(tenant=tenant_b, name="CLIENTS")
    migration.rename_case_duplicates(apps, SimpleNamespace(connection=connection))
    names = dict(ContactList.objects.values_list("pk", "name"))
    assert names == {first.pk: "Clients", second.pk: "clients (2)", other.pk: "CLIENTS"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="drops a constraint inside the test's transaction")
def test_the_migration_compares_names_as_the_databases_lower_does(tenant_a):
    """Python's lower() is not the database's: a capital I with a dot is
    two characters to one and "i" to the other, a word's final capital
    sigma is the final form to one and not to the other. Names the
    constraint finds equal were left alone, and it could not be made."""
    with connection.schema_editor() as editor:
        editor.remove_constraint(ContactList, ContactList._meta.constraints[0])
    for name in ["İSTANBUL", "istanbul", "ΣΑΣ", "σασ"]:
        ContactList.objects.create(tenant=tenant_a, name=name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT lower('İSTANBUL') = lower('istanbul'), lower('ΣΑΣ') = lower('σασ')")
        if cursor.fetchone() != (True, True):
            pytest.skip("this database's lower() agrees with Python's here")
    migration.rename_case_duplicates(apps, SimpleNamespace(connection=connection))
    names = ContactList.objects.filter(tenant=tenant_a).annotate(key=Lower("name"))
    assert set(names.values_list("name", flat=True)) == {"İSTANBUL", "istanbul (2)", "ΣΑΣ", "σασ (2)"}
    assert names.values("key").distinct().count() == 4
