"""map_in_bundle: order, failures after every call, and metrics counted from its threads."""

from __future__ import annotations

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindows

from tests.conftest import make_test_pipeline
from transforms.beam.bundle_threads import map_in_bundle


def test_results_come_back_in_input_order_though_calls_end_out_of_order() -> None:
    def slow_for_small(item: int) -> int:
        time.sleep(0.01 * (5 - item))
        return item * 10

    assert map_in_bundle(slow_for_small, [0, 1, 2, 3, 4], workers=4) == [0, 10, 20, 30, 40]


def test_calls_run_side_by_side_up_to_the_worker_count() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def track(_: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    map_in_bundle(track, list(range(8)), workers=3)
    assert most == 3


def test_every_call_finishes_before_the_first_failure_is_raised() -> None:
    finished: list[int] = []

    def fail_on_one(item: int) -> int:
        if item == 1:
            raise ValueError("item 1 refused")
        time.sleep(0.05)
        finished.append(item)
        return item

    with pytest.raises(ValueError, match="item 1 refused"):
        map_in_bundle(fail_on_one, [0, 1, 2, 3], workers=2)
    assert sorted(finished) == [0, 2, 3]


class _CountOnPoolThreads(beam.DoFn):
    def start_bundle(self) -> None:
        self._pending: list[int] = []

    def process(self, element: int) -> None:
        self._pending.append(element)

    def finish_bundle(self):  # type: ignore[no-untyped-def]
        counter = beam.metrics.Metrics.counter("test", "counted_on_pool_thread")

        def double(item: int) -> int:
            counter.inc()
            return item * 2

        for doubled in map_in_bundle(double, self._pending, workers=3):
            yield GlobalWindows.windowed_value(doubled)


def test_counters_incremented_on_pool_threads_reach_the_pipeline_metrics() -> None:
    pipeline = make_test_pipeline()
    doubled = pipeline | beam.Create(list(range(10))) | beam.ParDo(_CountOnPoolThreads())
    assert_that(doubled, equal_to([item * 2 for item in range(10)]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("counted_on_pool_thread"))
    assert sum(counter.committed for counter in counters["counters"]) == 10
