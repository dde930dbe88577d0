"""Sign-up to checklist in a real browser: Debian's Chromium driven by
Playwright, against the live server."""

import base64
import re

import pytest
from django.core import mail
from django_otp.oath import TOTP

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_newcomer_signs_up_and_reaches_the_checklist(page, live_server, tmp_path):
    page.goto(live_server.url + "/accounts/signup/")
    page.fill("input[name=email]", "ivy@initech.test")
    page.fill("input[name=full_name]", "Ivy")
    page.fill("input[name=organisation]", "Initech")
    page.fill("input[name=password]", "a long and unusual passphrase 9")
    page.screenshot(path=tmp_path / "1-signup.png", full_page=True)
    page.click("main button[type=submit]")
    page.wait_for_url("**/accounts/signup/sent/")
    assert "ivy@initech.test" in page.inner_text("main")

    # The link proves the address; the password then signs in.
    link = re.search(r"http://[^/\s]+(/\S+)", mail.outbox[-1].body).group(1)
    page.goto(live_server.url + link)
    page.wait_for_url("**/accounts/login/")
    page.fill("input[name=email]", "ivy@initech.test")
    page.fill("input[name=password]", "a long and unusual passphrase 9")
    page.click("main button[type=submit]")
    page.wait_for_url("**/two-factor/setup/")
    assert page.locator("img[src^='data:image/svg+xml']").is_visible()
    page.screenshot(path=tmp_path / "2-enrol.png", full_page=True)
    secret = page.inner_text(".secret-key").replace(" ", "")
    page.fill("input[name=token]", f"{TOTP(base64.b32decode(secret)).token():06d}")
    page.click("main button[type=submit]")
    page.wait_for_url("**/recovery-codes/")
    assert page.locator("ol.recovery-codes li").count() == 10
    page.screenshot(path=tmp_path / "3-recovery-codes.png", full_page=True)

    page.click("text=continue")
    page.wait_for_url(live_server.url + "/")
    assert page.locator("li[data-key=server]").is_visible()
    assert "Getting started" in page.inner_text("main")
    shot = tmp_path / "4-checklist.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    assert not page.csp_errors
    print(f"screenshots: {tmp_path}")
