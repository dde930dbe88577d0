"""Recovery codes, shown once, can be copied and downloaded in Chromium."""

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_codes_are_copied_and_downloaded(page, live_server, alice, tmp_path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    sign_in(page, alice, live_server)
    page.goto(live_server.url + reverse("accounts:recovery_codes"))
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10

    page.click("button[data-copy]")
    page.locator("button[data-copy]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(codes)

    with page.expect_download() as download:
        page.click("a[download]")
    saved = tmp_path / "codes.txt"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "postroute-recovery-codes.txt"
    assert saved.read_text().splitlines()[2:] == codes
    assert not page.csp_errors
