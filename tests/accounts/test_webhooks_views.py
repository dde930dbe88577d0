"""The webhooks page under the organisation's settings, through HTTP:
adding an endpoint shows its secret once (stored encrypted, never shown
again), editing its events, disabling, rotating the secret, deleting, the
"Send test event" button and the delivery log; members look, outsiders
get 404."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.webhooks import delivery, events
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db
SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{40,}")


def list_url() -> str:
    return reverse("accounts:webhooks:list")


def url(name: str, endpoint: WebhookEndpoint) -> str:
    return reverse(f"accounts:webhooks:{name}", args=[endpoint.public_id])


def add(client, receiver, events=("letter.bounced", "mailing.completed")):
    return client.post(list_url(), {"url": receiver.url, "description": "CRM", "events": list(events)}, follow=True)


def test_adding_an_endpoint_shows_its_secret_once_and_stores_it_encrypted(alice, receiver):
    response = add(alice.client, receiver)
    html = response.content.decode()
    assert response.status_code == 200 and response.redirect_chain[-1][1] == 302
    [secret] = set(SECRET.findall(html))
    assert response["Cache-Control"] == "no-store"
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["letter.bounced", "mailing.completed"] and endpoint.description == "CRM"
    assert endpoint.secret() == secret and secret not in endpoint.secret_encrypted
    again = alice.client.get(url("detail", endpoint)).content.decode()
    assert "only once" not in again and not SECRET.search(again)
    assert not SECRET.search(alice.client.get(list_url()).content.decode())


def test_complaints_are_an_event_an_endpoint_chooses(alice, receiver):
    form = alice.client.get(list_url()).content.decode()
    assert 'value="letter.complained"' in form and "marked a letter as spam" in form
    add(alice.client, receiver, events=["letter.complained"])
    assert WebhookEndpoint.objects.get().events == ["letter.complained"]


def test_the_page_is_linked_from_the_organisation_settings(alice):
    assert list_url() in alice.client.get(reverse("accounts:organisation")).content.decode()


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"url": "https://crm.example.com/x"}, "events", "Choose at least one event."),
        ({"url": "", "events": ["letter.bounced"]}, "url", "required"),
        ({"url": "ftp://crm.example.com/x", "events": ["letter.bounced"]}, "url", "https://"),
        ({"url": "https://crm.example.com/x", "events": ["no.such"]}, "events", "valid choice"),
        ({"url": "https://crm.example.com/" + "x" * 600, "events": ["letter.bounced"]}, "url", "at most 500"),
    ],
)
def test_bad_input_is_an_error_next_to_the_field_and_nothing_is_lost(alice, data, field, text):
    response = alice.client.post(list_url(), data)
    assert response.status_code == 400
    form = response.context["form"]
    assert text in " ".join(form.errors[field])
    assert form["url"].value() == data["url"]  # what was typed stays in the form
    assert not WebhookEndpoint.objects.exists()


def test_an_organisation_has_at_most_ten_endpoints(alice, receiver):
    for _ in range(10):
        add(alice.client, receiver)
    response = alice.client.post(list_url(), {"url": receiver.url, "events": ["letter.bounced"]})
    assert response.status_code == 400 and "at most 10 endpoints" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 10


def test_editing_disabling_rotating_and_deleting(alice, receiver, committed):
    add(alice.client, receiver)
    endpoint = WebhookEndpoint.objects.get()
    old_secret = endpoint.secret()

    response = alice.client.post(url("detail", endpoint), {"url": receiver.url, "events": ["import.finished"]})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.events == ["import.finished"] and endpoint.description == ""

    alice.client.post(url("enabled", endpoint), {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "disabled" in alice.client.get(list_url()).content.decode()
    alice.client.post(url("enabled", endpoint), {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled

    page = alice.client.post(url("rotate", endpoint), follow=True).content.decode()
    [new_secret] = set(SECRET.findall(page))
    endpoint.refresh_from_db()
    assert new_secret != old_secret and endpoint.secret() == new_secret
    receiver.secret = old_secret
    with committed():
        alice.client.post(url("test", endpoint))
    assert not receiver.received[-1].verified  # the old secret no longer signs
    receiver.secret = new_secret
    assert receiver.verify(receiver.received[-1].headers["Postroute-Signature"], receiver.received[-1].body)

    assert alice.client.post(url("delete", endpoint)).status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_the_test_button_sends_a_signed_test_event_and_the_log_shows_it(alice, receiver, committed):
    add(alice.client, receiver, events=["letter.bounced"])
    endpoint = WebhookEndpoint.objects.get()
    receiver.secret = endpoint.secret()
    with committed():
        response = alice.client.post(url("test", endpoint), follow=True)
    assert response.status_code == 200
    [request] = receiver.received
    assert request.verified and request.event["type"] == "webhook.test"
    assert request.event["data"]["endpoint"] == str(endpoint.public_id)

    html = alice.client.get(url("detail", endpoint)).content.decode()
    log = html[html.index('id="delivery-log"') :]
    assert "webhook.test" in log and ">200<" in log and str(request.event["id"]) in log
    assert re.search(r"\d+ ms", log) and "thanks" in log  # duration and the answer's start


def test_a_failed_test_is_in_the_log_with_its_error_and_not_retried(alice, receiver, committed):
    add(alice.client, receiver)
    endpoint = WebhookEndpoint.objects.get()
    receiver.answers = [500]
    with committed():
        alice.client.post(url("test", endpoint))
    sent = WebhookDelivery.objects.get()
    assert sent.status == WebhookDelivery.Status.FAILED
    assert delivery.deliver_due(now=timezone.now() + timedelta(days=2)) == 0
    html = alice.client.get(url("detail", endpoint)).content.decode()
    assert ">500<" in html and "The endpoint answered 500." in html and "gave up" in html


def test_the_log_shows_every_attempt_with_its_number_and_what_waits(alice, receiver, committed):
    add(alice.client, receiver, events=[events.IMPORT_FINISHED])
    endpoint = WebhookEndpoint.objects.get()
    receiver.answers = [500, 502]
    with committed():
        events.emit(tenant_id=endpoint.tenant_id, type=events.IMPORT_FINISHED, data={})
    with committed():
        delivery.deliver_due(now=timezone.now() + timedelta(minutes=1, seconds=5))
    html = alice.client.get(url("detail", endpoint)).content.decode()
    rows = html.split("data-attempt")[1:]
    assert len(rows) == 2 and ">502<" in rows[0] and ">500<" in rows[1]  # newest first
    assert "1 event is waiting for its next attempt." in html


def test_a_member_looks_but_cannot_change_anything(alice, bob, receiver):
    add(alice.client, receiver)
    endpoint = WebhookEndpoint.objects.get()
    assert bob.client.get(list_url()).status_code == 200
    page = bob.client.get(url("detail", endpoint))
    assert page.status_code == 200 and "Send test event" not in page.content.decode()
    assert bob.client.post(list_url(), {"url": receiver.url, "events": ["letter.bounced"]}).status_code == 403
    for name in ("detail", "enabled", "rotate", "test", "delete"):
        assert bob.client.post(url(name, endpoint), {"url": "https://evil.test/", "events": ["x"]}).status_code == 403
    assert WebhookEndpoint.objects.get().url == receiver.url and not WebhookDelivery.objects.exists()


def test_another_organisations_endpoint_is_a_404(alice, charlie, receiver):
    add(alice.client, receiver)
    endpoint = WebhookEndpoint.objects.get()
    assert charlie.client.get(url("detail", endpoint)).status_code == 404
    for name in ("detail", "enabled", "rotate", "test", "delete"):
        assert charlie.client.post(url(name, endpoint)).status_code == 404
    assert receiver.url not in charlie.client.get(list_url()).content.decode()
    assert WebhookEndpoint.objects.get().enabled and not WebhookDelivery.objects.exists()
