"""Fixtures of the tests of the dashboard's pass (mailing.dashboard.poll):
imported by the test modules that use them, each applies itself."""

import pytest
from django.core.cache import cache
from django.db import connection

from tests.services import require_redis


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the pass compares PostgreSQL's row versions (SQLite polls go the whole way)")


@pytest.fixture(params=["redis", "locmem"], autouse=True)
def shared_or_not(request, settings):
    """Production's Redis, and the per-process default of development."""
    if request.param == "redis":
        url = require_redis()
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    cache.clear()
    yield request.param
    cache.clear()
