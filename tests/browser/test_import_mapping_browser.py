"""The import's mapping page in Chromium on a phone (375 px), in Russian:
a file the detection read in the wrong encoding is corrected with the
"Encoding" select and "Read again", the column chosen before is kept, and
the import runs in the chosen encoding; a refused choice is said under the
select; nothing is wider than the screen and the page breaks no CSP rule."""

import pytest
from django.urls import reverse

from mailing.models import Contact, ContactImport

from .conftest import sign_in
from .test_layout_walk_browser import OVERFLOW

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Mac Cyrillic's "Д" is Windows-1251's "„": one word that reads as text in both.
MAC = "email,name,city\r\ndima@example.ru,Дмитрий,Moscow\r\n".encode("mac_cyrillic")


def laid_out(page) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= 375 and not found["past"] and not found["squeezed"], found


def test_the_encoding_is_corrected_on_a_phone_and_the_import_runs_in_it(
    page, live_server, alice, tenant_a, settings, tmp_path
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.IMPORTS_DIR = tmp_path / "imports"
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    file = SimpleUploadedFile("Клиенты.csv", MAC, "text/csv")
    assert alice.client.post(reverse("contacts:import_upload"), {"file": file}).status_code == 302
    imp = ContactImport.objects.get()
    assert imp.encoding == "cp1251"
    sign_in(page, alice, live_server)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(live_server.url + reverse("contacts:import_mapping", args=[imp.public_id]))
    select = page.get_by_label("Кодировка")
    assert select.input_value() == "cp1251" and "„митрий" in page.locator(".import-preview").inner_text()
    laid_out(page)

    page.locator("#id_col_1").select_option("last_name")
    select.select_option(label="Кириллица Mac")  # translated: "Mac Cyrillic"
    page.get_by_role("button", name="Прочитать заново").click()
    page.wait_for_load_state()
    assert "Дмитрий" in page.locator(".import-preview").inner_text()
    assert page.get_by_role("status").inner_text().startswith("Файл прочитан заново в кодировке Кириллица Mac.")
    assert (select.input_value(), page.locator("#id_col_1").input_value()) == ("mac_cyrillic", "last_name")
    laid_out(page)

    select.select_option("utf-8")  # Mac Cyrillic's letters are no UTF-8
    page.get_by_role("button", name="Прочитать заново").click()
    page.wait_for_load_state()
    refusal = page.locator("#id_encoding_error").inner_text()
    assert refusal.startswith("Файл нельзя прочитать в кодировке UTF-8: байт в позиции 33 файла")
    assert page.locator("#id_col_1").input_value() == "last_name"
    laid_out(page)

    select.select_option("mac_cyrillic")
    page.get_by_role("button", name="Прочитать заново").click()
    page.wait_for_load_state()
    # Enter in the list's name imports, as it did before "Read again" came first on the page.
    page.locator("#id_new_list_name").fill("Мои клиенты")
    page.locator("#id_new_list_name").press("Enter")
    page.wait_for_url(f"**{reverse('contacts:import', args=[imp.public_id])}")
    imp.refresh_from_db()
    assert (imp.status, imp.encoding) == (ContactImport.Status.DONE, "mac_cyrillic"), imp.error
    assert Contact.objects.get(tenant=tenant_a).last_name == "Дмитрий" and imp.contact_list.name == "Мои клиенты"
    assert page.csp_errors == []
