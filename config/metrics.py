"""Prometheus metrics. Counters and histograms are recorded where the work
happens, with small functions (letter_result, observe_batch, ...), labelled
by kind and never by tenant, so a platform of ten thousand tenants keeps a
few dozen series. Gauges of the state (queue depth, the oldest queued
letter, failing servers, bounce reader lag) are read at scrape time.

Several processes on one host (gunicorn's workers, Celery's pool) share
their counts through prometheus_client's multiprocess mode when
PROMETHEUS_MULTIPROC_DIR names a folder they all write (deploy/ sets it);
without it each process counts for itself (development, tests)."""

import logging
import os
import socket
import time
from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

# A process's files in the shared folder are named by host and pid, not pid
# alone: in compose every container's first process is pid 1, and two
# processes writing one file would corrupt each other's counts.
_HOST = socket.gethostname().replace("_", "-")  # "_" separates the parts of a file's name


def _process_id() -> str:
    return f"{_HOST}-{os.getpid()}"


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)

LETTERS = Counter(
    "postroute_letters",
    "Letters by result (sent, failed, deferred, requeued, bounced) and the kind of server.",
    ["result", "server_kind"],
)
SMTP_REPLIES = Counter("postroute_smtp_replies", "Replies to letters by class (2xx, 4xx, 5xx).", ["reply_class"])
LIMIT_REACHED = Counter(
    "postroute_limit_reached", "A limit stopped sending: hour, day, platform quota, or the provider's.", ["kind"]
)
SERVER_TROUBLE = Counter(
    "postroute_server_trouble",
    "A server was taken out (disabled) or made to rest (connection, rate_limit, refusals).",
    ["what"],
)
BATCH_SECONDS = Histogram(
    "postroute_dispatch_batch_seconds",
    "Duration of one dispatch batch (one SMTP connection).",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 240, 480),
)
LETTER_SECONDS = Histogram(
    "postroute_letter_seconds",
    "Time of one letter's SMTP exchange (MAIL FROM to the reply after DATA).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IMPORT_SECONDS = Histogram(
    "postroute_import_seconds",
    "Duration of one contact import.",
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600),
)
REQUEST_SECONDS = Histogram(
    "postroute_http_request_seconds",
    "Web request latency by method and status class.",
    ["method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_server_kinds: dict[int, str] = {}


def server_kind(server_id: int | None) -> str:
    """platform, external or internal; looked up once per server and process."""
    if server_id is None:
        return "none"
    if server_id not in _server_kinds:
        from servers.models import SmtpServer

        row = SmtpServer.objects.filter(pk=server_id).values_list("tenant_id", "kind").first()
        _server_kinds[server_id] = "gone" if row is None else "platform" if row[0] is None else row[1]
    return _server_kinds[server_id]


def know_server(server_id: int, tenant_id: int | None, kind: str) -> None:
    """The dispatcher holds the server's row: its kind without the query
    (one a server and process, so with hundreds of tenants' servers, one
    for nearly every mailing)."""
    _server_kinds.setdefault(server_id, "platform" if tenant_id is None else kind)


def reply_class(reply: str) -> str:
    code = reply[:1]
    return f"{code}xx" if code in "2345" and code else "none"


def letter_result(result: str, *, server_id: int | None = None, reply: str = "", count: int = 1) -> None:
    _letters(result, server_kind(server_id)).inc(count)
    if reply:
        _replies(reply_class(reply)).inc()


# Once per letter on the writer's path: labels() checks and converts its
# values and takes a lock on every call, for a child that never changes
# (a few dozen of them, nothing ever removes one).
@cache
def _letters(result: str, kind: str) -> Counter:
    return LETTERS.labels(result, kind)


@cache
def _replies(klass: str) -> Counter:
    return SMTP_REPLIES.labels(klass)


def observe_batch(seconds: float, letters: int) -> None:
    """For the dispatcher: one batch took `seconds` for `letters` letters."""
    BATCH_SECONDS.observe(seconds)


def observe_letter(seconds: float) -> None:
    """For the dispatcher: one letter's exchange took `seconds`."""
    LETTER_SECONDS.observe(seconds)


def limit_reached(kind: str) -> None:
    """For the dispatcher: kind is "hour", "day" or "platform_quota"."""
    LIMIT_REACHED.labels(kind).inc()


def server_failed() -> None:
    SERVER_TROUBLE.labels("disabled").inc()


def server_rested(reason: str) -> None:
    SERVER_TROUBLE.labels(reason).inc()
    if reason == "rate_limit":
        LIMIT_REACHED.labels("provider").inc()


def observe_import(seconds: float) -> None:
    IMPORT_SECONDS.observe(seconds)


def observe_request(method: str, status: int, seconds: float) -> None:
    method = method if method in ("GET", "HEAD", "POST") else "other"
    REQUEST_SECONDS.labels(method, f"{status // 100}xx").observe(seconds)


class StateCollector(Collector):
    """What the platform looks like now, read when Prometheus asks (and only
    in the web process that answers /metrics)."""

    NAMES = (
        "postroute_queue_depth",
        "postroute_oldest_queued_letter_seconds",
        "postroute_servers_failing",
        "postroute_bounce_reader_lag_seconds",
        "postroute_state_up",
    )

    def collect(self):
        """Each source of state on its own: Redis or PostgreSQL down leaves
        the counters and the other source's gauges scrapable (a 500 would
        hide them when they matter most, and read as the web being down),
        and postroute_state_up says which one failed."""
        up = GaugeMetricFamily(
            "postroute_state_up", "Whether the source of the state gauges answered the scrape.", labels=["source"]
        )
        for source, read in (("broker", _queue_depths), ("database", _database_gauges)):
            try:
                families = list(read())
            except Exception as exc:  # any failure: that source's gauges are missing, its state_up is 0
                logger.warning("The %s did not answer the metrics scrape: %s", source, type(exc).__name__)
                families = []
                up.add_metric([source], 0)
            else:
                up.add_metric([source], 1)
            yield from families
        yield up


def _queue_depths():
    from config.health import queues

    from . import heartbeats

    depth = GaugeMetricFamily("postroute_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
    client = heartbeats.broker_redis()
    if client is not None:
        for queue in queues():
            depth.add_metric([queue], client.llen(queue))
    yield depth


def _database_gauges():
    from django.db.models import Min, OuterRef, Q, Subquery
    from django.utils import timezone

    from mailing.models import Letter, Mailing
    from servers.models import BounceMailbox, Health, SmtpServer

    now = timezone.now()
    running = (Mailing.Status.ACTIVE, Mailing.Status.WAITING)
    # Each running mailing's first queued letter by id (its oldest: a
    # mailing's letters are made in id order), one index row a mailing,
    # never every queued letter (a million of them made each scrape slow).
    first_queued = Letter.objects.filter(mailing=OuterRef("pk"), status=Letter.Status.QUEUED).order_by("id")
    oldest = (
        Mailing.objects.filter(status__in=running)
        .annotate(oldest=Subquery(first_queued.values("created_at")[:1]))
        .aggregate(at=Min("oldest"))["at"]
    )
    yield GaugeMetricFamily(
        "postroute_oldest_queued_letter_seconds",
        "Age of the oldest letter waiting in a running mailing.",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )
    failing = SmtpServer.objects.filter(Q(health=Health.FAILING) | Q(backoff_until__gt=now), enabled=True).count()
    yield GaugeMetricFamily("postroute_servers_failing", "Enabled servers failing or resting now.", value=failing)
    last = BounceMailbox.objects.filter(enabled=True).aggregate(at=Min("last_checked_at"))["at"]
    yield GaugeMetricFamily(
        "postroute_bounce_reader_lag_seconds",
        "Time since the least recently read enabled bounce mailbox was read.",
        value=(now - last).total_seconds() if last else 0.0,
    )


@cache
def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
        # python_info names the interpreter's version: nothing a scraper needs.
        registry.unregister(PLATFORM_COLLECTOR)
    registry.register(StateCollector())
    return registry


def exposition() -> tuple[bytes, str]:
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


class Timer:
    def __enter__(self) -> "Timer":
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
