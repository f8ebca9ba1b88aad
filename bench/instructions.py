"""Instructions per event of the pure chain and of ``json.loads``, counted by valgrind.

    python -m bench.instructions [--events 3000]

Timings on a shared 2-core VM swing by ±15%; instruction counts repeat to within a
fraction of a percent, so this is the yardstick for comparing two versions of the
chain. Each side runs in its own process under ``valgrind --tool=cachegrind
--cache-sim=no``, next to a run that only builds the corpus and warms the caches;
the difference divided by the events is the figure. Needs valgrind on the PATH
(Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime

from bench.corpus import generate
from transforms.model.chain import ModelConfig, RawMessage, process_payload

MODES = ("setup", "json", "chain")


def workload(mode: str, events: int) -> None:
    """What one valgrind run executes: the corpus, a warm-up, then ``mode``'s loop."""
    lines = generate(events)
    messages = [RawMessage(line) for line in lines]
    config = ModelConfig()
    received = datetime(2026, 11, 2, tzinfo=UTC)
    loaded = "2026-11-02T00:00:01.000000Z"
    for line in generate(200, seed=7):  # name caches and lazy imports, in every mode
        process_payload(RawMessage(line), received, loaded, config)
    if mode == "json":
        for line in lines:
            json.loads(line)
    elif mode == "chain":
        for message in messages:
            process_payload(message, received, loaded, config)


def counted_instructions(mode: str, events: int) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--run",
        mode,
        "--events",
        str(events),
    ]
    report = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    match = re.search(r"I\s+refs:\s+([\d,]+)", report)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's report:\n{report[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)  # inside valgrind
    args = parser.parse_args(argv)
    if args.run:
        workload(args.run, args.events)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    setup, json_total, chain_total = (counted_instructions(m, args.events) for m in MODES)
    json_per_event = (json_total - setup) / args.events
    chain_per_event = (chain_total - setup) / args.events
    print(f"corpus: {args.events} events")
    print(f"json.loads alone : {json_per_event:12,.0f} instructions/event")
    print(f"pure chain       : {chain_per_event:12,.0f} instructions/event")
    print(f"ratio json.loads/chain in instructions: {json_per_event / chain_per_event:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
