"""Rate limits in the database (accounts.ratelimits): all keys or none, a
window that opens with the first event, exact under racing requests."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from accounts import ratelimits
from accounts.models import RateCounter
from tests.services import require_postgresql

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def limits(*pairs: tuple[str, int]) -> list[ratelimits.Limit]:
    return [ratelimits.Limit(name, limit, HOUR) for name, limit in pairs]


def passes(limit_list, now=NOW) -> bool:
    try:
        ratelimits.hit(limit_list, now=now)
    except ratelimits.RateLimited:
        return False
    return True


def test_at_most_the_limit_passes_in_a_window_that_opens_with_the_first():
    address = limits(("to:a", 3))
    assert [passes(address, NOW + timedelta(minutes=i)) for i in range(5)] == [True, True, True, False, False]
    assert not passes(address, NOW + HOUR - timedelta(seconds=1))
    assert passes(address, NOW + HOUR)  # the window opened at the first event


def test_a_refused_event_counts_against_no_key():
    assert passes(limits(("to:a", 1), ("client:x", 5)))
    assert not passes(limits(("to:a", 1), ("client:x", 5)))
    assert not passes(limits(("to:a", 1), ("client:x", 5)))
    counts = {row.count for row in RateCounter.objects.all()}
    assert counts == {1}  # the client key was not charged for the refusals


def test_the_refusal_says_until_when_and_which_limit():
    passes(limits(("to:a", 1)), NOW)
    with pytest.raises(ratelimits.RateLimited) as caught:
        ratelimits.hit(limits(("to:a", 1), ("client:x", 5)), now=NOW + timedelta(minutes=10))
    assert caught.value.retry_at == NOW + HOUR and caught.value.names == ["to:a"]


def test_keys_are_stored_hashed():
    passes(limits(("to:ann@example.test", 1)))
    assert "ann" not in RateCounter.objects.get().key


def test_give_back_and_purge():
    address = limits(("to:a", 1))
    assert passes(address)
    ratelimits.give_back(address)
    assert passes(address)
    assert ratelimits.purge(now=NOW + HOUR - timedelta(seconds=1)) == 0
    assert ratelimits.purge(now=NOW + HOUR) == 1


@pytest.mark.django_db(transaction=True)
def test_racing_requests_never_let_one_too_many_through():
    require_postgresql()
    start = threading.Barrier(10)
    results: list[bool] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            # Overlapping keys in different orders: the rows are locked in key order.
            names = [("to:victim", 4), (f"client:{i % 3}", 100)]
            results.append(passes(limits(*(names if i % 2 else names[::-1]))))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 4 and len(results) == 10
