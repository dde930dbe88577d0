"""The contacts pages: lists, a list's contacts, adding, editing and deleting
— for every role of the tenant, and a 404 for everyone else."""

import pytest
from django.urls import reverse

from mailing import contacts
from mailing.models import Contact, ContactList, CustomField, Suppression
from tests.helpers import SPECIAL_USE_ADDRESSES, deployment_mode
from tests.mailing.builders import make_list, suppress

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(tenant_a) -> ContactList:
    return make_list(tenant_a, "Customers", ["ann@example.com", "bob@example.com"])


def test_the_overview_lists_each_list_with_its_count(alice, customers, tenant_a):
    make_list(tenant_a, "Empty")
    page = alice.client.get(reverse("contacts:index"))
    assert {(lst.name, lst.contact_count) for lst in page.context["lists"]} == {("Customers", 2), ("Empty", 0)}
    assert page.context["total"] == 2
    assert 'aria-current="page">Contacts</a>' in page.content.decode()


def test_a_list_page_searches_and_pages(bob, customers, tenant_a):
    for i in range(55):
        contacts.contact_create(tenant=tenant_a, email=f"p{i:02}@example.org", first_name="Pat", lists=[customers])
    url = reverse("contacts:list", args=[customers.public_id])
    first = bob.client.get(url)
    assert first.context["page"].paginator.count == 57 and len(first.context["page"].object_list) == 50
    second = bob.client.get(url, {"page": 2})
    assert len(second.context["page"].object_list) == 7
    found = bob.client.get(url, {"q": "ann"})
    assert [c.email for c in found.context["page"].object_list] == ["ann@example.com"]
    named = bob.client.get(url, {"q": "pat", "page": 2})
    assert len(named.context["page"].object_list) == 5 and "q=pat&amp;page=1" in named.content.decode()


def test_suppressed_addresses_are_marked_on_the_contact_list(alice, customers, tenant_a, tenant_b):
    suppress(tenant_a, "ann@example.com")
    suppress(tenant_b, "bob@example.com")  # another tenant's suppression changes nothing here
    page = alice.client.get(reverse("contacts:list", args=[customers.public_id]))
    marks = {c.email: c.suppressed for c in page.context["page"].object_list}
    assert marks == {"ann@example.com": True, "bob@example.com": False}
    assert page.content.decode().count(">Suppressed</span>") == 1


def test_a_member_adds_a_contact_with_custom_fields_into_a_list(bob, customers, tenant_a):
    CustomField.objects.create(tenant=tenant_a, key="company", label="Company")
    url = reverse("contacts:add") + f"?list={customers.public_id}"
    assert bob.client.get(url).context["form"]["lists"].value() == [customers.public_id]
    data = {
        "email": "Carl@Example.ORG",
        "first_name": "Carl",
        "lists": [str(customers.public_id)],
        "cf_company": "Initech",
    }
    response = bob.client.post(url, data)
    assert response["Location"] == reverse("contacts:list", args=[customers.public_id])
    carl = Contact.objects.get(email="Carl@example.org")
    assert carl.fields == {"company": "Initech"} and list(carl.lists.all()) == [customers]
    again = bob.client.post(reverse("contacts:add"), {"email": "Carl@EXAMPLE.org"})
    assert again.status_code == 400 and "already exists" in again.content.decode()
    bad = bob.client.post(reverse("contacts:add"), {"email": "carl@localhost"})
    assert bad.status_code == 400 and Contact.objects.filter(tenant=tenant_a).count() == 3


@pytest.mark.parametrize("address", SPECIAL_USE_ADDRESSES)
def test_a_contact_on_a_special_use_domain_is_for_self_hosted_installations(bob, tenant_a, settings, address):
    deployment_mode(settings, "saas")
    refused = bob.client.post(reverse("contacts:add"), {"email": address})
    assert refused.status_code == 400 and "only a self-hosted installation may use it" in refused.content.decode()
    deployment_mode(settings, "self_hosted")
    assert bob.client.post(reverse("contacts:add"), {"email": address}).status_code == 302
    assert list(Contact.objects.filter(tenant=tenant_a).values_list("email", flat=True)) == [address]


def test_a_contact_is_edited_and_deleted(alice, customers, tenant_a):
    ann = Contact.objects.get(email="ann@example.com")
    url = reverse("contacts:edit", args=[ann.public_id])
    assert alice.client.get(url).context["form"]["email"].value() == "ann@example.com"
    response = alice.client.post(url, {"email": "ann@example.net", "last_name": "Lee"})
    assert response.status_code == 302
    ann.refresh_from_db()
    assert (ann.email, ann.last_name, ann.lists.count()) == ("ann@example.net", "Lee", 0)
    taken = alice.client.post(url, {"email": "bob@example.com"})
    assert taken.status_code == 400 and Contact.objects.get(pk=ann.pk).email == "ann@example.net"
    back = reverse("contacts:list", args=[customers.public_id])
    response = alice.client.post(reverse("contacts:delete", args=[ann.public_id]), {"next": back})
    assert response["Location"] == back and not Contact.objects.filter(pk=ann.pk).exists()
    evil = alice.client.post(
        reverse("contacts:delete", args=[Contact.objects.get().public_id]), {"next": "https://evil.test/"}
    )
    assert evil["Location"] == reverse("contacts:all")


def test_lists_are_created_renamed_and_deleted(carol, customers, tenant_a):
    response = carol.client.post(reverse("contacts:list_create"), {"name": "Partners"})
    partners = ContactList.objects.get(name="Partners")
    assert response["Location"] == reverse("contacts:list", args=[partners.public_id])
    taken = carol.client.post(reverse("contacts:list_create"), {"name": "customers"})
    assert taken.status_code == 400 and "already a list" in taken.content.decode()
    renamed = carol.client.post(reverse("contacts:list_rename", args=[partners.public_id]), {"name": "Friends"})
    assert renamed.status_code == 302 and ContactList.objects.filter(name="Friends").exists()
    carol.client.post(reverse("contacts:list_delete", args=[customers.public_id]))
    assert not ContactList.objects.filter(pk=customers.pk).exists()
    assert Contact.objects.filter(tenant=tenant_a).count() == 2
    assert carol.client.get(reverse("contacts:all")).context["page"].paginator.count == 2


def test_a_custom_field_is_added_from_the_overview(alice, tenant_a):
    response = alice.client.post(reverse("contacts:field_add"), {"label": "Компания"})
    assert response.status_code == 302
    assert CustomField.objects.get(tenant=tenant_a).key == "kompaniya"
    again = alice.client.post(reverse("contacts:field_add"), {"label": "X", "key": "kompaniya"})
    assert again.status_code == 400 and "already a field" in again.content.decode()


def test_an_outsider_gets_404_on_every_contact_url(charlie, customers, tenant_a):
    ann = Contact.objects.get(email="ann@example.com")
    urls = [
        ("get", reverse("contacts:list", args=[customers.public_id]), {}),
        ("post", reverse("contacts:list_rename", args=[customers.public_id]), {"name": "Mine"}),
        ("post", reverse("contacts:list_delete", args=[customers.public_id]), {}),
        ("get", reverse("contacts:edit", args=[ann.public_id]), {}),
        ("post", reverse("contacts:edit", args=[ann.public_id]), {"email": "x@globex.example.org"}),
        ("post", reverse("contacts:delete", args=[ann.public_id]), {}),
    ]
    for method, url, data in urls:
        assert getattr(charlie.client, method)(url, data).status_code == 404, url
    assert customers.name == ContactList.objects.get(pk=customers.pk).name
    assert Contact.objects.get(pk=ann.pk).email == "ann@example.com"
    add = charlie.client.get(reverse("contacts:add") + f"?list={customers.public_id}")
    assert add.context["chosen"] is None and "Customers" not in add.content.decode()
    stolen = charlie.client.post(
        reverse("contacts:add"), {"email": "new@globex.example.org", "lists": [str(customers.public_id)]}
    )
    assert stolen.status_code == 400 and not customers.contacts.filter(email="new@globex.example.org").exists()
    for url in (reverse("contacts:index"), reverse("contacts:all"), reverse("contacts:all") + "?q=ann"):
        html = charlie.client.get(url).content.decode()
        assert "ann@example.com" not in html and "Customers" not in html


def test_pages_need_a_login(client, customers):
    for url in (reverse("contacts:index"), reverse("contacts:list", args=[customers.public_id])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


def test_no_page_has_inline_script_or_style(alice, customers, tenant_a):
    ann = Contact.objects.get(email="ann@example.com")
    Suppression.objects.create(tenant=tenant_a, email="x@example.com", reason="manual")
    for url in (
        reverse("contacts:index"),
        reverse("contacts:all"),
        reverse("contacts:list", args=[customers.public_id]),
        reverse("contacts:add"),
        reverse("contacts:edit", args=[ann.public_id]),
        reverse("contacts:suppressions"),
        reverse("contacts:import_upload"),
    ):
        html = alice.client.get(url).content.decode()
        assert "<script>" not in html and " style=" not in html and "<style" not in html, url
