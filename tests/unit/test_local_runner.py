"""Bounded state on the local streaming runner: the in-process seen-ids store
(transforms.dedup), which store a pipeline gets, and the insert shards it uses."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from transforms.dedup import SeenKeys, resolved_state
from transforms.write import LOCAL_STREAMING_SHARDS, _local_streaming_shards


def test_a_key_is_refused_inside_the_window_and_admitted_after_it() -> None:
    seen = SeenKeys(window_seconds=60)
    assert seen.admit("m1", 0)
    assert not seen.admit("m1", 10)
    assert not seen.admit("m1", 59.9)
    assert seen.admit("m1", 60)  # DeduplicatePerKey's timer fires at first + window


def test_an_out_of_order_repeat_inside_the_window_is_refused() -> None:
    seen = SeenKeys(window_seconds=60)
    assert seen.admit("m1", 100)
    assert not seen.admit("m1", 90)


def test_keys_are_independent() -> None:
    seen = SeenKeys(window_seconds=60)
    assert seen.admit("a", 0) and seen.admit("b", 1)
    assert not seen.admit("a", 2) and not seen.admit("b", 3)


def test_a_readmitted_key_is_not_forgotten_with_its_old_arrival() -> None:
    """The expired first arrival of m1 must not take the newer record with it."""
    seen = SeenKeys(window_seconds=10)
    assert seen.admit("m1", 0)
    assert seen.admit("m1", 10)  # window over: admitted again, remembered at 10
    assert seen.admit("other", 15)  # prunes the arrival at 0 (horizon 5)
    assert not seen.admit("m1", 16)  # still inside the window that began at 10


def test_memory_holds_only_the_window() -> None:
    """A steady stream of distinct ids keeps about window x rate entries, not all of them."""
    seen = SeenKeys(window_seconds=10)
    for second in range(10_000):
        assert seen.admit(f"m{second}", float(second))
    assert len(seen.first_seen) <= 11


@pytest.mark.parametrize(
    ("runner", "expected"),
    [
        (BundleBasedDirectRunner(), "in_process"),
        (FnApiRunner(), "keyed"),
    ],
)
def test_auto_keeps_state_in_process_only_on_the_bundle_based_direct_runner(
    runner: object, expected: str
) -> None:
    pipeline = beam.Pipeline(runner=runner)
    assert resolved_state("auto", pipeline) == expected
    assert resolved_state("keyed", pipeline) == "keyed"
    assert resolved_state("in_process", pipeline) == "in_process"


def test_streaming_inserts_use_few_shards_only_on_the_local_streaming_runner() -> None:
    local = beam.Pipeline(runner=BundleBasedDirectRunner())
    assert _local_streaming_shards(local) == {"num_streaming_keys": LOCAL_STREAMING_SHARDS}
    assert _local_streaming_shards(beam.Pipeline(runner=FnApiRunner())) == {}
