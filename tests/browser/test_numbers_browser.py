"""Numbers a script writes on a live page are written as the page's
language writes them, the same as the server wrote them at load: 1 234 (a
no-break space) in Russian, 1.234 in Vietnamese, 1,234 in English."""

import pytest

from mailing.models import Mailing
from tests.mailing.builders import make_template

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WRITTEN = {
    "en": ("1,234", "12,345.5"),
    "ru": ("1\u00a0234", "12\u00a0345,5"),
    "vi": ("1.234", "12.345,5"),
}


def test_the_mailings_groups_count_all_their_mailings_in_the_pages_language(page, live_server, alice, tenant_a):
    """The Mailings page counted the rows it shows (at most 200) and its
    script wrote the count with no grouping."""
    template = make_template(tenant_a)
    Mailing.objects.bulk_create(
        Mailing(tenant=tenant_a, name=f"m{i}", template=template, status=Mailing.Status.CANCELLED) for i in range(1234)
    )
    sign_in(page, alice, live_server)
    count = '[data-f="finished_count"]'
    for language, (grouped, fraction) in WRITTEN.items():
        alice.user.language = language
        alice.user.save(update_fields=["language"])
        page.goto(f"{live_server.url}/mailings/")
        assert page.inner_text(count) == grouped, language  # as the server wrote it
        page.evaluate(f"document.querySelector('{count}').textContent = 'x'")
        page.wait_for_function("(count) => document.querySelector(count).textContent !== 'x'", arg=count)
        assert page.inner_text(count) == grouped, language  # as the script wrote it at the next poll
        assert page.evaluate("Postroute.number(12345.5)") == fraction, language
    assert not page.csp_errors
