import pytest

from config import heartbeats, metrics
from tests.services import require_redis


@pytest.fixture
def redis_broker(settings):
    """The broker is the test Redis: heartbeats, the beat lock and queue
    depths live there, as in production."""
    url = require_redis()
    settings.CELERY_BROKER_URL = url
    heartbeats.broker_redis.cache_clear()
    client = heartbeats.broker_redis()
    client.flushdb()
    yield client
    client.flushdb()
    heartbeats.broker_redis.cache_clear()


@pytest.fixture
def folder_broker(settings, tmp_path):
    """The development broker: heartbeats in files."""
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.VAR_DIR = tmp_path
    heartbeats.broker_redis.cache_clear()
    yield
    heartbeats.broker_redis.cache_clear()


@pytest.fixture
def metrics_token(settings) -> str:
    settings.METRICS_TOKEN = "scrape-" + "t0k3n" * 6
    metrics._server_kinds.clear()
    return settings.METRICS_TOKEN
