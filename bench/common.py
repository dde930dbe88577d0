"""Shared set-up for benchmarks: a PostgreSQL database of their own
(BENCH_DATABASE_URL, default postroute_bench on 127.0.0.1), migrated, and a
timer that also reports Python's peak memory."""

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postroute_bench"


def setup_django() -> None:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    _create_database(url)
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", DEBUG="1", ENV_FILE="")
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    # A fresh database each run: the figures never depend on leftovers.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # the name is our own setting
        conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Measure:
    seconds: float
    peak_mb: float


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def measured() -> "Iterator[Measure]":
    """Wall time, and how far the process's peak resident memory grew
    (tracemalloc would slow the code it measures several times over)."""
    result = Measure(0.0, 0.0)
    before = _max_rss_mb()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        result.peak_mb = _max_rss_mb() - before


def repeat(fn: Callable[[], object], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
