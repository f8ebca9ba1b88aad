"""One bundle's waits on BigQuery spread over a few threads, its metrics kept.

Beam counts a DoFn's metrics through the state sampler of the thread running the
bundle (a thread-local); a counter incremented on any other thread is silently
dropped. While the pool works, the bundle's thread only waits for it, so the pool's
threads may report to that same sampler. Beam has no public helper for this, hence
these few lines over its ``statesampler`` module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from apache_beam.runners.worker import statesampler

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_bundle(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int
) -> list[Result]:
    """``[function(item) for item in items]``, up to ``workers`` at a time, in order;
    every call runs to its end before the first failure is raised."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    tracker = statesampler.get_current_tracker()

    def call(item: Item) -> Result:
        statesampler.set_current_tracker(tracker)
        try:
            return function(item)
        finally:
            statesampler.set_current_tracker(None)

    with ThreadPoolExecutor(min(workers, len(items))) as pool:
        futures = [pool.submit(call, item) for item in items]
    return [future.result() for future in futures]
