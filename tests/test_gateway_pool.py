"""The batch jobs' thread pool: every item runs once, one failure does not stop the others, and the
interpreter's switch interval is raised only while a pool of several threads runs."""
from __future__ import annotations

import sys
import threading

import pytest

from billcore import gateway_pool
from billcore.gateway_pool import POOL_SWITCH_INTERVAL, run_each


def test_items_run_once_and_a_failure_stops_none_of_the_others(app):
    done, failed, lock = [], [], threading.Lock()

    def work(item: int) -> None:
        if item == 3:
            raise RuntimeError("item 3 fails")
        with lock:
            done.append(item)

    with app.app_context():
        run_each(range(10), work, 4, lambda item, exc: failed.append((item, str(exc))))
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7, 8, 9] and failed == [(3, "item 3 fails")]


def test_the_switch_interval_is_longer_only_while_a_pool_runs(app):
    before = sys.getswitchinterval()
    seen: list[float] = []
    with app.app_context():
        run_each([1, 2], lambda item: seen.append(sys.getswitchinterval()), 2, lambda item, exc: None)
        assert seen == [pytest.approx(POOL_SWITCH_INTERVAL)] * 2  # kept in whole microseconds
        assert sys.getswitchinterval() == before
        seen.clear()
        run_each([1], lambda item: seen.append(sys.getswitchinterval()), 1, lambda item, exc: None)
        assert seen == [before]  # one thread: nothing to hand over, nothing changed


def test_overlapping_pools_put_back_the_interval_from_before_the_first(app):
    before = sys.getswitchinterval()
    inner_started, outer_may_end = threading.Event(), threading.Event()

    def other_pool() -> None:
        with app.app_context():
            run_each([1], lambda item: (inner_started.set(), outer_may_end.wait(10)), 2, lambda i, e: None)

    with app.app_context():
        thread = threading.Thread(target=other_pool)
        thread.start()
        assert inner_started.wait(10)

        seen: list[float] = []
        run_each([1], lambda item: seen.append(sys.getswitchinterval()), 2, lambda item, exc: None)
        assert seen == [pytest.approx(POOL_SWITCH_INTERVAL)]
        # this pool ended while the other still runs: the interval stays raised for it
        assert sys.getswitchinterval() == pytest.approx(POOL_SWITCH_INTERVAL) and gateway_pool._pools_running == 1
        outer_may_end.set()
        thread.join(10)
    assert sys.getswitchinterval() == before and gateway_pool._pools_running == 0
