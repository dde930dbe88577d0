"""What the pages say about receivers before a mailing starts: the
mailing's page (a start that receivers will reject needs a ticked box,
checked on the server), the template preview and the servers page, with
the checks pointed at the test's own DNS server (tests/servers/dns_server.py)."""

import pytest
from django.urls import reverse

from mailing import mailings as services
from mailing.models import Mailing
from tests.servers.factories import make_server

from .builders import make_list, make_template

pytestmark = pytest.mark.django_db
REJECTED = "Will be rejected"


def make_mailing(tenant, *senders: str) -> Mailing:
    servers = [
        make_server(tenant, name=f"Relay {n}", host="smtp.acme.test", sender_email=sender)
        for n, sender in enumerate(senders, 1)
    ]
    mailing = Mailing(tenant=tenant, name="November", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, "A", ["ann@x.test"])], servers=servers)
    return mailing


def start(person, mailing: Mailing, **data: str) -> str:
    url = reverse("mailings:action", args=[mailing.public_id, "start"])
    return person.client.post(url, data, follow=True).content.decode()


def test_a_start_that_receivers_will_reject_asks_for_the_box_then_goes(alice, tenant_a, dns_checks):
    mailing = make_mailing(tenant_a, "news@pass.test", "news@fail.test")
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert page.count(REJECTED) == 1 and "Passes SPF and DMARC" in page
    assert "v=spf1 ip4:5.45.200.99 mx ip4:5.45.200.10 -all" in page  # the record to publish
    assert page.count('name="confirm_rejected"') == 1  # on the Start form (no start time set)

    refused = start(alice, mailing)
    mailing.refresh_from_db()
    assert mailing.preparing_since is None and "Receivers will reject the letters sent through «Relay 2»" in refused

    assert "Starting: preparing 1 letter." in start(alice, mailing, confirm_rejected="1")
    mailing.refresh_from_db()
    assert mailing.preparing_since is not None or mailing.status == Mailing.Status.ACTIVE


def test_passing_or_unchecked_pairs_start_without_a_question(alice, tenant_a, dns_checks, settings):
    settings.DNS_TIMEOUT = 0.3
    mailing = make_mailing(tenant_a, "news@pass.test", "news@x.timeout.test")
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Could not check" in page and "confirm_rejected" not in page
    assert "Starting: preparing 1 letter." in start(alice, mailing)


def test_with_the_checks_off_the_pages_say_nothing_and_never_ask(alice, tenant_a):
    mailing = make_mailing(tenant_a, "news@fail.test")
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Receivers" not in page
    assert "Starting: preparing 1 letter." in start(alice, mailing)


def test_the_template_preview_judges_each_servers_from(alice, tenant_a, dns_checks):
    make_server(tenant_a, name="Company", host="smtp.acme.test", sender_email="news@pass.test")
    make_server(tenant_a, name="Gmail", host="smtp.gmail.com", sender_email="news@fail.test")
    template = make_template(tenant_a, sender_email="news@quarantine.test")
    page = alice.client.get(reverse("templates:preview", args=[template.public_id])).content.decode()
    assert "Passes SPF and DMARC" in page and REJECTED in page
    assert "v=spf1 ip4:5.45.200.99 mx include:_spf.google.com -all" in page


def test_the_servers_pages_judge_each_servers_own_address(alice, tenant_a, dns_checks):
    server = make_server(tenant_a, name="Company", host="smtp.acme.test", sender_email="news@signed.test")
    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "Passes SPF and DMARC" in page and "DKIM: default" in page
    server.sender_email = "news@quarantine.test"
    server.save(update_fields=["sender_email"])
    page = alice.client.get(reverse("servers:edit", args=[server.public_id])).content.decode()
    assert "Will receivers accept letters from news@quarantine.test?" in page and "Will likely go to spam" in page
