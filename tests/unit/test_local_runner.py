"""Bounded state on the local streaming runner: the in-process seen-ids store
(transforms.beam.dedup), which store a pipeline gets, and the insert shards it uses."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.warehouse.config import WarehouseConfig
from transforms.beam.dedup import SeenKeys, resolved_state
from transforms.beam.write import (
    LOCAL_STREAMING_SHARDS,
    LatestTraits,
    LatestTraitsPerUserOf,
    MergeUsers,
    _local_streaming_shards,
)
from transforms.model.normalize import TableRow


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


def _users_row(user: str, received: str, **traits: object) -> dict[str, object]:
    return {"id": user, "received_at": received, "timestamp": received, **traits}


def test_latest_traits_per_user_of_a_dataset_folds_like_the_per_user_combine() -> None:
    """The dataset-keyed combine (local streaming runner) gives each user the row the
    per-user LatestTraits gives, however the rows are split over accumulators."""
    rows = [
        _users_row("u1", "2026-01-01T00:00:01.000000Z", plan="free", email="a@x"),
        _users_row("u2", "2026-01-01T00:00:02.000000Z", plan="pro"),
        _users_row("u1", "2026-01-01T00:00:03.000000Z", plan="pro"),
        _users_row("u1", "2026-01-01T00:00:00.000000Z", plan="old", city="Paris"),
        _users_row("u2", "2026-01-01T00:00:01.000000Z", logins=3),
    ]
    per_user = LatestTraits()
    expected = {}
    for row in rows:
        expected[row["id"]] = per_user.add_input(
            expected.get(row["id"], per_user.create_accumulator()), row
        )
    combine = LatestTraitsPerUserOf()
    for split in range(len(rows) + 1):
        left = combine.create_accumulator()
        right = combine.create_accumulator()
        for row in rows[:split]:
            left = combine.add_input(left, row)
        for row in rows[split:]:
            right = combine.add_input(right, row)
        out = combine.extract_output(combine.merge_accumulators([left, right]))
        assert {row["id"]: row for row in out} == expected
    assert expected["u1"]["plan"] == "pro" and expected["u1"]["city"] == "Paris"


def test_users_are_keyed_by_dataset_only_on_the_local_streaming_runner() -> None:
    def step_labels(runner: object) -> set[str]:
        pipeline = beam.Pipeline(runner=runner)
        schemas = pipeline | "Schemas" >> beam.Create([])
        _ = (
            pipeline
            | beam.Create([TableRow("ds", "users", _users_row("u1", "2026-01-01T00:00:00Z"), {})])
            | "MergeUsers" >> MergeUsers(WarehouseConfig(project="p"), schemas)
        )
        labels: set[str] = set()

        class Visitor(PipelineVisitor):
            def enter_composite_transform(self, node) -> None:
                labels.add(node.full_label)

            def visit_transform(self, node) -> None:
                labels.add(node.full_label)

        pipeline.visit(Visitor())
        return labels

    assert "MergeUsers/LatestTraitsPerUserOfDataset" in step_labels(BundleBasedDirectRunner())
    assert "MergeUsers/LatestTraitsPerUser" in step_labels(FnApiRunner())
    assert "MergeUsers/LatestTraitsPerUserOfDataset" not in step_labels(FnApiRunner())
