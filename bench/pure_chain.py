"""Events/s of the pure chain (parse + validate + normalize + infer) on one core,
next to ``json.loads`` alone on the same corpus in the same run.

    python -m bench.pure_chain [--events 50000] [--repeat 5]

Prints the best of ``--repeat`` timed passes for each and the median of the
per-round ratios (the two sides run back to back in every round). Passes are
timed in CPU seconds of this process (``time.process_time``), so a busy neighbour
on the same core (the emulator, a test run) does not count as chain time; both
sides are pinned to one core and measured alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from bench.corpus import generate
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter


def _rounds(repeat: int, *works: Callable[[], None]) -> list[list[float]]:
    """CPU seconds of each work in each of ``repeat`` rounds; the works alternate
    within a round, so a slow spell of the machine slows both sides of a round."""
    times: list[list[float]] = [[] for _ in works]
    for _ in range(repeat):
        for index, work in enumerate(works):
            gc.collect()
            started = time.process_time()
            work()
            times[index].append(time.process_time() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    lines = generate(args.events)
    size = sum(map(len, lines))
    config = ModelConfig()
    received = datetime(2026, 11, 2, tzinfo=UTC)
    loaded = "2026-11-02T00:00:01.000000Z"
    messages = [RawMessage(line) for line in lines]

    def json_loads() -> None:
        loads = json.loads
        for line in lines:
            loads(line)

    def chain() -> None:
        for message in messages:
            process_payload(message, received, loaded, config)

    json_times, chain_times = _rounds(args.repeat, json_loads, chain)
    json_seconds, chain_seconds = min(json_times), min(chain_times)
    # The ratio of each round (both sides timed back to back): its median is the figure,
    # steadier than a ratio of two bests that may come from different rounds.
    ratios = sorted(j / c for j, c in zip(json_times, chain_times, strict=True))
    # Counted after the timing, so the figure is the chain's work, not the bench's.
    outputs = Counter(
        "dead_letters" if isinstance(item, DeadLetter) else "rows"
        for message in messages
        for item in process_payload(message, received, loaded, config)
    )
    json_rate = args.events / json_seconds
    chain_rate = args.events / chain_seconds
    print(f"corpus: {args.events} events, {size / args.events:.0f} bytes/event on average")
    print(f"json.loads alone : {json_rate:12,.0f} events/s")
    print(
        f"pure chain       : {chain_rate:12,.0f} events/s "
        f"({outputs['rows']} rows, {outputs['dead_letters']} dead letters)"
    )
    print(
        f"ratio chain/json.loads, median of {len(ratios)} rounds: "
        f"{statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x; "
        f"ratio of the bests {chain_rate / json_rate:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
