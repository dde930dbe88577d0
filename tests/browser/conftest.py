import os

import pytest

from tests.services import require_chromium

# Playwright's sync API runs an event loop in this thread; the ORM calls made
# here are still plain synchronous ones.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-quic", "--no-first-run", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the package's tests (a launch is about a second);
    each test has a context of its own, with its own cookies, storage,
    cache and permissions. The package's tests run one after another, so
    Playwright's event loop in this thread ends with the last of them."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser_context(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    yield context
    # A page that polls (the dashboard, a mailing's page) must not have a
    # request in the live server while the test's database is flushed after
    # it: the request's reads and the flush's TRUNCATE locked each other
    # (a deadlock, the flush refused, the next test's rows clashing). Its
    # scripts stop with about:blank; a request already on its way is given
    # the time one takes to end.
    for open_page in context.pages:
        open_page.goto("about:blank")
    if context.pages:
        context.pages[0].wait_for_timeout(300)
    context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    page.csp_errors = []
    page.on("console", lambda m: page.csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    return page


def sign_in(page, person, live_server) -> None:
    """Give the browser the session of a fully signed-in test person."""
    page.context.add_cookies(
        [{"name": "sessionid", "value": person.client.cookies["sessionid"].value, "url": live_server.url}]
    )
