"""The suppression list: is_suppressed, adding by hand, removing, searching
and exporting — each tenant sees and changes only its own."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from mailing import contacts
from mailing.models import Suppression

pytestmark = pytest.mark.django_db

R = Suppression.Reason


def test_is_suppressed_compares_normalised_addresses_per_tenant(tenant_a, tenant_b):
    contacts.suppression_add(tenant=tenant_a, email="Ann@EXAMPLE.com", reason=R.MANUAL)
    assert contacts.is_suppressed(tenant_a, "Ann@example.com")
    assert contacts.is_suppressed(tenant_a, " Ann@Example.COM ")
    assert not contacts.is_suppressed(tenant_b, "Ann@example.com")
    assert not contacts.is_suppressed(tenant_a, "not an address")


def test_adding_twice_keeps_the_first_reason(tenant_a):
    first = contacts.suppression_add(tenant=tenant_a, email="a@example.com", reason=R.HARD_BOUNCE, note="550 5.1.1")
    again = contacts.suppression_add(tenant=tenant_a, email="a@EXAMPLE.com", reason=R.MANUAL)
    assert again.pk == first.pk and again.reason == R.HARD_BOUNCE and Suppression.objects.count() == 1
    with pytest.raises(ValidationError):
        contacts.suppression_add(tenant=tenant_a, email="a@localhost", reason=R.MANUAL)


def test_a_member_adds_searches_and_removes_by_hand(bob, tenant_a):
    response = bob.client.post(
        reverse("contacts:suppression_add"), {"email": "Spam@Trap.ORG", "note": "asked by phone"}
    )
    assert response.status_code == 302
    row = Suppression.objects.get()
    assert (row.tenant, row.email, row.reason, row.note) == (tenant_a, "Spam@trap.org", R.MANUAL, "asked by phone")
    bad = bob.client.post(reverse("contacts:suppression_add"), {"email": "nope"})
    assert bad.status_code == 400 and Suppression.objects.count() == 1
    contacts.suppression_add(tenant=tenant_a, email="other@example.com", reason=R.UNSUBSCRIBED)
    page = bob.client.get(reverse("contacts:suppressions"), {"q": "phone"})
    assert [s.email for s in page.context["page"].object_list] == ["Spam@trap.org"]
    bob.client.post(reverse("contacts:suppression_remove"), {"email": "Spam@TRAP.org"})
    assert list(Suppression.objects.values_list("email", flat=True)) == ["other@example.com"]


def test_the_export_holds_only_own_rows_and_no_formulas(alice, charlie, tenant_a, tenant_b):
    contacts.suppression_add(tenant=tenant_a, email="a@example.com", reason=R.UNSUBSCRIBED, note="=1+1")
    contacts.suppression_add(tenant=tenant_b, email="theirs@globex.example", reason=R.MANUAL)
    response = alice.client.get(reverse("contacts:suppression_export"))
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode().removeprefix("\ufeff"))))
    assert rows[0] == ["Email", "Reason", "Note", "Added"]
    assert [r[:3] for r in rows[1:]] == [["a@example.com", "Unsubscribed", "'=1+1"]]
    theirs = b"".join(charlie.client.get(reverse("contacts:suppression_export")).streaming_content).decode()
    assert "theirs@globex.example" in theirs and "a@example.com" not in theirs


EXPORTED = {
    "ru": (";", ["Почта", "Причина", "Примечание", "Добавлен"], "Добавлен вручную"),
    "vi": (";", ["Email", "Lý do", "Ghi chú", "Ngày thêm"], "Thêm thủ công"),
    "en": (",", ["Email", "Reason", "Note", "Added"], "Added by hand"),
}


@pytest.mark.parametrize("language", EXPORTED)
def test_the_export_opens_in_columns_in_the_readers_excel_and_language(alice, tenant_a, language):
    """A Russian or Vietnamese Excel splits a CSV file at the semicolon:
    written with commas, every row was one cell. Its header and reasons
    were English codes ("reason", "manual") in every language."""
    separator, header, manual = EXPORTED[language]
    contacts.suppression_add(tenant=tenant_a, email="a@example.com", reason=R.MANUAL, note="Иван, bounce; later")
    response = alice.client.get(reverse("contacts:suppression_export"), HTTP_ACCEPT_LANGUAGE=language)
    text = b"".join(response.streaming_content).decode().removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text), delimiter=separator))
    assert rows[0] == header
    assert rows[1][:3] == ["a@example.com", manual, "Иван, bounce; later"]


def test_an_outsider_neither_sees_nor_removes_anothers_rows(charlie, tenant_a):
    contacts.suppression_add(tenant=tenant_a, email="a@example.com", reason=R.UNSUBSCRIBED)
    assert "a@example.com" not in charlie.client.get(reverse("contacts:suppressions")).content.decode()
    charlie.client.post(reverse("contacts:suppression_remove"), {"email": "a@example.com"})
    assert contacts.is_suppressed(tenant_a, "a@example.com")


def test_the_export_writes_when_each_address_was_added_in_the_organisations_zone(alice, tenant_a):
    """The rows are written after the view returned, when the request's zone
    is no longer active: the file said "2025-12-04T22:30:00.123456+00:00" to
    a company in Kathmandu whose pages said 04:15 on the 5th."""
    tenant_a.time_zone = "Asia/Kathmandu"
    tenant_a.save(update_fields=["time_zone"])
    row = contacts.suppression_add(tenant=tenant_a, email="a@example.com", reason=R.MANUAL)
    Suppression.objects.filter(pk=row.pk).update(created_at=datetime(2025, 12, 4, 22, 30, 0, 123456, tzinfo=UTC))
    response = alice.client.get(reverse("contacts:suppression_export"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode().removeprefix("\ufeff"))))
    assert rows[1][3] == "2025-12-05T04:15:00+05:45"


def test_a_suppression_holds_for_the_address_in_any_case(tenant_a):
    """Ann@ who unsubscribed is ann@ to every provider: a list that writes
    her otherwise (a CRM export, an import) must not mail her again. Both
    ways of making letters (PostgreSQL's one statement, and in batches)."""
    from mailing import mailings
    from mailing.models import Letter, Mailing
    from tests.servers.factories import make_server

    from .builders import make_list, make_template

    contacts.suppression_add(tenant=tenant_a, email="ann@example.com", reason=R.UNSUBSCRIBED)
    assert contacts.is_suppressed(tenant_a, "ANN@example.com")
    again = contacts.suppression_add(tenant=tenant_a, email="Ann@Example.com", reason=R.MANUAL)
    assert (again.email, again.reason, Suppression.objects.count()) == ("ann@example.com", R.UNSUBSCRIBED, 1)

    people = make_list(tenant_a, "L", ["Ann@example.com", "ANN@EXAMPLE.COM", "bob@example.com"])
    listed = contacts.contacts_search(tenant=tenant_a)
    assert {c.email: c.suppressed for c in listed} == {
        "ANN@EXAMPLE.COM": True,
        "Ann@example.com": True,
        "bob@example.com": False,
    }
    mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
    mailings.mailing_save(mailing=mailing, lists=[people], servers=[make_server(tenant_a)])
    assert sorted(mailings.recipients(mailing).values_list("email", flat=True)) == ["bob@example.com"]
    mailings.mailing_start(mailing=mailing)
    assert list(Letter.objects.values_list("email", flat=True)) == ["bob@example.com"]
    assert contacts.suppression_remove(tenant=tenant_a, email="ANN@example.com")  # as listed, in any case
    assert not contacts.is_suppressed(tenant_a, "ann@example.com")
