"""The contacts pages in Chromium: a CSV import from upload to result, and
the progress page following a running import without a manual reload."""

import os
from pathlib import Path

import pytest

from mailing.models import ContactImport, ContactList, ImportRejection
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(tab, name: str, tmp_path: Path) -> None:
    """A screenshot to look at: under $SCREENSHOTS_DIR when set."""
    tab.screenshot(path=Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path) / f"{name}.png", full_page=True)


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return settings.IMPORTS_DIR


def test_a_csv_import_from_upload_to_result(page, live_server, alice, tenant_a, tmp_path):
    ContactList.objects.create(tenant=tenant_a, name="Customers")
    csv_file = tmp_path / "clients.csv"
    csv_file.write_bytes("Email;Имя;Компания\nivan@example.ru;Иван;Рога\nbroken;Пётр;\n".encode("cp1251"))
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/contacts/imports/new/")
    page.set_input_files("input[name=file]", str(csv_file))
    page.click("text=Upload and continue")
    page.wait_for_selector("select[name=col_0]")
    # The page's script listens for the list's change once it has run: the
    # select can be there before (a busy machine), and its change then
    # went unheard.
    page.wait_for_load_state("load")
    assert page.input_value("select[name=col_0]") == "email"
    assert page.is_visible("input[name=new_list_name]")
    page.select_option("select[name=contact_list]", label="Customers")
    page.wait_for_selector("input[name=new_list_name]", state="hidden", timeout=5000)
    page.select_option("select[name=col_2]", value="new")
    shot(page, "import-mapping", tmp_path)
    # The visible button: the form's hidden default (what Enter presses) is no button to a user.
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_selector(".rejections-table")
    assert page.inner_text("#import-created") == "1" and page.inner_text("#import-rejected") == "1"
    assert "Invalid email address" in page.inner_text(".rejections-table")
    shot(page, "import-result", tmp_path)
    page.goto(live_server.url + "/contacts/")
    shot(page, "contacts-index", tmp_path)
    page.click("text=Customers")
    assert "ivan@example.ru" in page.inner_text(".contacts-table")
    shot(page, "contacts-list", tmp_path)
    assert not page.csp_errors


def test_the_progress_page_follows_a_running_import(page, live_server, alice, tenant_a, tmp_path):
    target = ContactList.objects.create(tenant=tenant_a, name="Big")
    imp = ContactImport.objects.create(
        tenant=tenant_a, contact_list=target, file_name="big.csv", file_size=1000, bytes_read=500,
        rows_seen=40, created=39, rejected=1, status=ContactImport.Status.RUNNING,
    )  # fmt: skip
    sign_in(page, alice, live_server)
    page.goto(f"{live_server.url}/contacts/imports/{imp.public_id}/")
    assert page.get_attribute("#import-progress", "value") == "50"
    ContactImport.objects.filter(pk=imp.pk).update(bytes_read=900, rows_seen=90, created=88)
    page.wait_for_selector('#import-rows:text-is("90")', timeout=10_000)
    assert page.get_attribute("#import-progress", "value") == "90"
    shot(page, "import-progress", tmp_path)
    ImportRejection.objects.create(contact_import=imp, line=7, reason="No email address.", raw=";x")
    ContactImport.objects.filter(pk=imp.pk).update(status=ContactImport.Status.DONE, bytes_read=1000)
    page.wait_for_selector(".rejections-table", timeout=10_000)
    assert page.inner_text("#import-status") == "Done"
    assert not page.csp_errors
