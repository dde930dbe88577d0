"""/metrics: Prometheus's format for a scraper with the token, nothing for
anyone else; letters counted as the dispatcher records them (through a real
SMTP server), queue depths read from Redis, state gauges from the database."""

import re

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from config import heartbeats
from mailing import mailings as services
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template, run_until_settled
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db


def scrape(token: str) -> dict[tuple[str, tuple], float]:
    response = Client(HTTP_HOST="10.0.0.9").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_without_the_token_there_is_nothing(metrics_token, settings):
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": metrics_token}):
        assert Client().get("/metrics", **header).status_code == 404
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_letters_sent_through_a_real_server_are_counted(metrics_token, tenant_a, folder_broker):
    before = scrape(metrics_token)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        contact_list = make_list(tenant_a, "L", [f"m{i}@x.test" for i in range(3)])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        services.mailing_start(mailing=mailing)
        run_until_settled(mailing)
    assert len(handler.received) == 3
    after = scrape(metrics_token)
    sent = "postroute_letters_total"
    assert (
        value(after, sent, result="sent", server_kind="external")
        - value(before, sent, result="sent", server_kind="external")
        == 3
    )
    replies = "postroute_smtp_replies_total"
    assert value(after, replies, reply_class="2xx") - value(before, replies, reply_class="2xx") == 3
    # No tenant in any label: the series stay few however many tenants.
    assert not any(dict(labels).get("tenant") for _, labels in after)
    assert value(after, "postroute_oldest_queued_letter_seconds") == 0.0  # nothing waits any more
    # The dispatcher times each letter's exchange and each batch.
    letters, batches = "postroute_letter_seconds_count", "postroute_dispatch_batch_seconds_count"
    assert value(after, letters) - value(before, letters) == 3
    assert value(after, batches) - value(before, batches) >= 1


def test_a_spent_limit_is_counted_by_its_window(metrics_token, tenant_a, folder_broker):
    before = scrape(metrics_token)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=2, max_connections=1)
        contact_list = make_list(tenant_a, "L", [f"m{i}@x.test" for i in range(3)])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        services.mailing_start(mailing=mailing)
        assert run_until_settled(mailing) == "waiting"
    assert len(handler.received) == 2
    after = scrape(metrics_token)
    reached = "postroute_limit_reached_total"
    assert value(after, reached, kind="hour") - value(before, reached, kind="hour") >= 1


def test_web_requests_are_timed_by_method_and_status_class(metrics_token, folder_broker):
    count = "postroute_http_request_seconds_count"
    before = scrape(metrics_token)
    Client().get("/accounts/login/")
    Client().get("/no/such/page/")
    after = scrape(metrics_token)
    for status in ("2xx", "4xx"):
        assert value(after, count, method="GET", status=status) - value(before, count, method="GET", status=status) == 1


def test_queue_depth_is_read_from_redis(metrics_token, redis_broker):
    redis_broker.rpush("dispatch", b"a", b"b", b"c")
    redis_broker.rpush("imports", b"x")
    samples = scrape(metrics_token)
    assert value(samples, "postroute_queue_depth", queue="dispatch") == 3
    assert value(samples, "postroute_queue_depth", queue="imports") == 1
    assert value(samples, "postroute_queue_depth", queue="mail") == 0


def test_the_development_broker_has_no_depth_and_no_error(metrics_token, folder_broker):
    samples = scrape(metrics_token)
    assert not [key for key in samples if key[0] == "postroute_queue_depth"]
    assert ("postroute_servers_failing", ()) in samples


def test_the_exposition_names_no_version_or_secret(metrics_token, folder_broker):
    body = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").content.decode()
    assert "postroute_dispatch_batch_seconds_bucket" in body and "postroute_letter_seconds_bucket" in body
    assert "postroute_import_seconds_bucket" in body and "postroute_http_request_seconds" in body
    assert not re.search(r"python_info|version=", body)


def test_a_dead_broker_leaves_the_counters_scrapable(metrics_token, redis_broker, settings):
    """Redis down is when the operator needs the letters' counters most: the
    scrape still answers, without the queue depths, and says which source
    of state failed (rather than a 500 that reads as the web being down)."""
    before = scrape(metrics_token)
    assert value(before, "postroute_state_up", source="broker") == 1
    assert value(before, "postroute_state_up", source="database") == 1
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    heartbeats.broker_redis.cache_clear()
    samples = scrape(metrics_token)
    assert value(samples, "postroute_state_up", source="broker") == 0
    assert value(samples, "postroute_state_up", source="database") == 1
    assert not [key for key in samples if key[0] == "postroute_queue_depth"]
    assert ("postroute_servers_failing", ()) in samples
    assert ("postroute_dispatch_batch_seconds_count", ()) in samples
