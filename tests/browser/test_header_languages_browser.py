"""The signed-in header in every language: one row at 1400 px (wordmark,
organisation and its switcher, the seven links, log out, the language),
and at 375 px nothing wider than the screen and no link broken over two
lines. Russian words are long: the Russian labels are the short ones a
Russian user reads in every mail client ("Шаблоны", "Рассылки")."""

import pytest

from accounts.models import Membership, Role

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The header's items as boxes: wordmark, organisation, each nav link, log out, language.
ITEMS = """() => [...document.querySelectorAll(
  '.header-inner > .wordmark, .header-inner > .tenant, .site-nav a, '
  + '.header-inner > .logout-form, .header-inner > .language-switch'
)].map((el) => {
  const r = el.getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, width: r.width, text: el.innerText};
})"""


def rows(items: list[dict]) -> list[tuple]:
    return [(i["text"].split("\n")[0], round(i["top"]), round(i["bottom"]), round(i["width"])) for i in items]


LINK_HEIGHTS = "() => [...document.querySelectorAll('.site-nav a')].map((a) => a.getBoundingClientRect().height)"


@pytest.mark.parametrize("language", ["en", "ru", "vi"])
def test_the_header_is_one_row_at_1400_px_and_tidy_at_375(page, live_server, alice, tenant_a, tenant_b, language):
    tenant_a.name = "Ромашка и партнёры"
    tenant_a.save(update_fields=["name"])
    Membership.objects.create(user=alice.user, tenant=tenant_b, role=Role.MEMBER)  # the switcher shows
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    sign_in(page, alice, live_server)

    page.set_viewport_size({"width": 1400, "height": 800})
    page.goto(f"{live_server.url}/")
    page.wait_for_selector(".tenant-switch.is-live")
    items = page.evaluate(ITEMS)
    assert len(items) == 11  # wordmark, organisation, 7 links, log out, language
    lowest_top, highest_bottom = max(i["top"] for i in items), min(i["bottom"] for i in items)
    assert lowest_top < highest_bottom, f"{language}: the header wraps: {rows(items)}"

    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    heights = page.evaluate(LINK_HEIGHTS)
    assert max(heights) < 1.5 * min(heights), f"{language}: a link breaks over two lines at 375 px: {heights}"
    assert not page.csp_errors
