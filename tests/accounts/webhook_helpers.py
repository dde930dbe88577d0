"""Shared by the webhook tests (tests/conftest.py makes the fixtures
available): a receiver per test, endpoints made through the
service (the secret handed to the receiver), and running what the
transaction would run once committed."""

from collections.abc import Iterator

import pytest

from accounts.webhooks import events, services
from accounts.webhooks import events as events_module
from accounts.webhooks.models import WebhookEndpoint
from tests.webhook_receiver import Receiver, webhook_receiver

ALL = list(events.TYPES)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs what waits for the commit (the events'
    recording, the delivery tasks) at the end of the block, as a real
    commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def make_endpoint(tenant, receiver: Receiver, events: list[str] | None = None) -> WebhookEndpoint:
    endpoint, secret = services.endpoint_create(tenant=tenant, url=receiver.url, events=events or ALL)
    receiver.secret = secret
    events_module.forget_subscriptions(tenant.pk)  # the commit would
    return endpoint
