"""Where a local streaming run spends its time: pulls, bundle runs and sink calls.

``probe()`` wraps, for the length of a ``with`` block in this process, the local
runner's Pub/Sub pull, its bundle executor and the sink's calls (Storage Write
appends, insertAll requests), and counts them; ``leaf_transforms`` counts the steps
of a streaming graph below its read. Bench tooling only: the product never patches
Beam (these are the DirectRunner's internals, which may change with Beam).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.runners.direct import executor, transform_evaluator

from pipeline.graphs.streaming import build_streaming_graph
from pipeline.warehouse import storage_write
from transforms.beam import endpoint_client


@dataclass
class Probe:
    pulls: int = 0
    pulls_with_messages: int = 0
    messages: int = 0
    pull_seconds: float = 0.0
    bundle_runs: int = 0
    empty_bundle_runs: int = 0
    sink_calls: int = 0
    sink_rows: int = 0
    sink_seconds: float = 0.0
    empty_runs_by_step: Counter[str] = field(default_factory=Counter)

    def report(self, wall: float) -> list[str]:
        busy = max(wall - self.pull_seconds - self.sink_seconds, 0.0)
        per_pull = self.bundle_runs / max(self.pulls_with_messages, 1)
        return [
            f"pulls: {self.pulls} ({self.pulls_with_messages} with messages, "
            f"{self.messages} messages); bundle runs per pull with messages: {per_pull:,.1f} "
            f"({self.empty_bundle_runs / max(self.bundle_runs, 1):.0%} of "
            f"{self.bundle_runs:,} runs on an empty bundle)",
            f"sink calls (appends or insertAll): {self.sink_calls:,}, "
            f"{self.sink_rows / max(self.sink_calls, 1):,.1f} rows per call",
            f"time: {self.sink_seconds:,.1f} s waiting on the sink, {self.pull_seconds:,.1f} s "
            f"in pulls, {busy:,.1f} s the rest of {wall:,.1f} s (runner, event model, schema)",
            "most runs on an empty bundle: "
            + ", ".join(f"{step} {n:,}" for step, n in self.empty_runs_by_step.most_common(6)),
        ]


def _timed(
    owner: Any, name: str, record: Callable[[Any, Sequence[Any], float], None]
) -> Callable[[], None]:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original(*args, **kwargs)
        record(result, args, time.perf_counter() - started)
        return result

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


@contextmanager
def probe() -> Iterator[Probe]:
    found = Probe()
    lock = threading.Lock()

    def pulled(result: Any, _args: Sequence[Any], seconds: float) -> None:
        with lock:
            found.pulls += 1
            found.pulls_with_messages += bool(result)
            found.messages += len(result)
            found.pull_seconds += seconds

    def ran(_result: Any, args: Sequence[Any], _seconds: float) -> None:
        task = args[0]
        empty = not task._input_bundle.has_elements()
        with lock:
            found.bundle_runs += 1
            found.empty_bundle_runs += empty
            if empty:
                found.empty_runs_by_step[task._applied_ptransform.full_label] += 1

    def appended(_result: Any, args: Sequence[Any], seconds: float) -> None:
        request = args[1]
        with lock:
            found.sink_calls += 1
            found.sink_rows += len(request.proto_rows.rows.serialized_rows)
            found.sink_seconds += seconds

    def inserted(_result: Any, args: Sequence[Any], seconds: float) -> None:
        with lock:
            found.sink_calls += 1
            found.sink_rows += len(args[2])
            found.sink_seconds += seconds

    undo = [
        _timed(transform_evaluator._PubSubReadEvaluator, "_read_from_pubsub", pulled),
        _timed(executor.TransformExecutor, "call", ran),
        _timed(storage_write, "_answer", appended),
        _timed(endpoint_client.EndpointBigQueryClient, "insert_rows_json", inserted),
    ]
    try:
        yield found
    finally:
        for restore in undo:
            restore()


def leaf_transforms(options: beam.options.pipeline_options.PipelineOptions) -> int:
    """The leaf steps of the streaming graph these options build, below its Pub/Sub read."""
    pipeline = beam.Pipeline(options=options)
    build_streaming_graph(pipeline)
    leaves: list[str] = []

    class Leaves(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node: Any) -> None:
            leaves.append(node.full_label)

    pipeline.visit(Leaves())
    return sum(1 for label in leaves if not label.startswith("ReadPubSub/"))
