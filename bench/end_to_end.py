"""Events/s from files to the BigQuery emulator on the local runner, where the time goes,
and BigQuery API calls as the input grows.

    python -m bench.end_to_end [--events 5000,20000]

Starts its own local stack (temporary data, the shared emulator install), runs the batch
pipeline once per size (each into a fresh dataset, so each creates its tables), and stops
the stack. For each run it prints:

- wall time and events/s;
- CPU seconds of the pipeline process and of the emulator process over the run: when the
  emulator is busy for most of the wall time while the pipeline's CPU is a fraction of it,
  the emulator, not the pipeline, sets the pace;
- schema API calls by kind, insert requests and users MERGE calls: per table and per
  request of up to 500 rows, so they do not grow per event.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.corpus import generate
from pipeline import localstack
from pipeline.run import counters, run

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="5000,20000", help="comma-separated sizes")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.events.split(",")]
    with tempfile.TemporaryDirectory(prefix="opentrack-bench-") as scratch:
        with localstack.running(Path(scratch) / "stack", install_dir=localstack.default_state_dir()) as stack:
            os.environ.update(localstack.environment(stack))
            emulator_pid = stack.pids[0]
            for index, events in enumerate(sizes):
                corpus = Path(scratch) / f"events-{events}.jsonl"
                corpus.write_bytes(b"\n".join(generate(events, seed=5)) + b"\n")
                emulator_before, own_before = process_cpu_seconds(emulator_pid), own_cpu_seconds()
                started = time.perf_counter()
                result = run(
                    [
                        f"--input={corpus}",
                        f"--bigquery_project={stack.project}",
                        f"--bigquery_endpoint={stack.bigquery_endpoint}",
                        f"--source_name=Bench {index}",
                    ]
                )
                seconds = time.perf_counter() - started
                emulator_cpu = process_cpu_seconds(emulator_pid) - emulator_before
                own_cpu = own_cpu_seconds() - own_before
                report(events, seconds, own_cpu, emulator_cpu, counters(result))
    return 0


def report(events: int, seconds: float, own_cpu: float, emulator_cpu: float, metrics: dict) -> None:
    schema_calls = {
        k.removeprefix("bigquery_schema_call_"): v
        for k, v in sorted(metrics.items())
        if k.startswith("bigquery_schema_call_")
    }
    inserts = metrics.get("bigquery_insert_requests", 0)
    merges = metrics.get("bigquery_users_merge_calls", 0)
    rows = metrics.get("schema_rows_fitted", 0)
    print(f"--- {events} events, {rows} rows")
    print(f"end to end: {seconds:.1f} s, {events / seconds:,.0f} events/s")
    print(f"CPU: pipeline {own_cpu:.1f} s ({own_cpu / seconds:.0%} of wall), "
          f"emulator {emulator_cpu:.1f} s ({emulator_cpu / seconds:.0%} of wall)")
    print(f"schema API calls: {sum(schema_calls.values())} {schema_calls}")
    print(f"insert requests: {inserts} ({rows / max(inserts, 1):.0f} rows per request)")
    print(f"users MERGE calls: {merges}")


if __name__ == "__main__":
    raise SystemExit(main())
