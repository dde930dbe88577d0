"""The getting-started checklist on the home page ticks its steps with the
dashboard's polls, without a reload, and leaves once every step is done."""

import pytest
from django.utils import timezone

from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
STEP = '.checklist-step[data-key="{}"]'


def test_the_checklist_ticks_live_and_leaves_when_done(page, live_server, alice, tenant_a):
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/")
    assert page.inner_text("#checklist-progress-label") == "0 of 4 done"
    page.evaluate("window.loadedOnce = true")

    template = make_template(tenant_a)
    page.wait_for_function("s => document.querySelector(s).classList.contains('done')", arg=STEP.format("template"))
    assert page.inner_text("#checklist-progress-label") == "1 of 4 done"
    assert not page.is_visible(STEP.format("template") + " .checklist-step-text")
    assert page.is_visible(STEP.format("server") + " .checklist-step-text")

    make_server(tenant_a)
    make_list(tenant_a, "L", ["a@x.test"])
    Mailing.objects.create(tenant=tenant_a, name="m", template=template, status="completed", started_at=timezone.now())
    page.wait_for_selector(".checklist-card", state="hidden")
    assert page.evaluate("window.loadedOnce") is True
    assert not page.csp_errors


def test_the_steps_state_for_screen_readers_stays_in_the_users_language(page, live_server, alice, tenant_a):
    """The poll rewrites each step's hidden "(done)" / "(to do)": it took
    English literals from the script, so a Russian page read "(to do)"
    three seconds after it loaded."""
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    sign_in(page, alice, live_server)
    page.goto(live_server.url + "/")
    hidden = STEP.format("server") + " .visually-hidden"
    assert page.text_content(hidden) == " (сделать)"

    make_template(tenant_a)  # a change, so that the next poll patches the list
    page.wait_for_function("s => document.querySelector(s).classList.contains('done')", arg=STEP.format("template"))
    assert page.text_content(STEP.format("template") + " .visually-hidden") == " (готово)"
    assert page.text_content(hidden) == " (сделать)"
