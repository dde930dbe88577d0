"""Sentences a page builds around its data are translated whole, and a
number that is a name (a port) is not grouped like a quantity: what a
Russian or Vietnamese reader saw on the import and connection test pages."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mailing.models import ContactImport
from servers.models import BounceMailbox, ConnectionTest
from tests.servers.factories import make_server

SAID = {
    "ru": {",": "Столбцы разделены запятыми.", ";": "Столбцы разделены точкой с запятой.",
           "\t": "Столбцы разделены табуляцией."},
    "vi": {",": "Các cột phân tách bằng dấu phẩy.", ";": "Các cột phân tách bằng dấu chấm phẩy.",
           "\t": "Các cột phân tách bằng dấu tab."},
}  # fmt: skip


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path):
    settings.IMPORTS_DIR = tmp_path / "imports"


def speaks(person, language: str) -> None:
    person.user.language = language
    person.user.save(update_fields=["language"])


@pytest.mark.parametrize("language", ["ru", "vi"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_mapping_page_says_how_columns_are_separated_in_the_language(alice, language, delimiter):
    speaks(alice, language)
    content = delimiter.join(["email", "name"]) + "\nann@example.com" + delimiter + "Ann\n"
    file = SimpleUploadedFile("customers.csv", content.encode(), "text/csv")
    alice.client.post(reverse("contacts:import_upload"), {"file": file})
    imp = ContactImport.objects.get()
    page = alice.client.get(reverse("contacts:import_mapping", args=[imp.public_id])).content.decode()
    assert SAID[language][delimiter] in page
    for english in ("commas", "semicolons", "tabs"):
        assert english not in page


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_the_connection_test_page_shows_the_port_as_it_is_typed(alice, tenant_a, language):
    speaks(alice, language)
    server = make_server(tenant_a, host="smtp.acme.test", port=2525, sender_email="news@acme.test")
    test = ConnectionTest.objects.create(tenant=tenant_a, server=server, status=ConnectionTest.Status.PASSED)
    page = alice.client.get(reverse("servers:test", args=[test.public_id])).content.decode()
    assert "smtp.acme.test:2525" in page
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", port=1143, login="b@acme.test")
    test = ConnectionTest.objects.create(tenant=tenant_a, mailbox=mailbox, status=ConnectionTest.Status.PASSED)
    page = alice.client.get(reverse("servers:test", args=[test.public_id])).content.decode()
    assert "imap.acme.test:1143" in page
