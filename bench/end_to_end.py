"""Events/s from files to the BigQuery emulator on the local runner, and BigQuery
API calls per 10,000 events (schema calls and insert requests counted apart).

    python -m bench.end_to_end [--events 20000]

Starts its own local stack (temporary data, the shared emulator install) and
stops it afterwards. The figure includes Beam's start-up and the emulator's
own speed: compare it with ``bench.pure_chain`` to see where time goes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.corpus import generate
from pipeline import localstack
from pipeline.run import counters, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opentrack-bench-") as scratch:
        corpus = Path(scratch) / "events.jsonl"
        corpus.write_bytes(b"\n".join(generate(args.events, seed=5)) + b"\n")
        with localstack.running(Path(scratch) / "stack", install_dir=localstack.default_state_dir()) as stack:
            os.environ.update(localstack.environment(stack))
            started = time.perf_counter()
            result = run(
                [
                    f"--input={corpus}",
                    f"--bigquery_project={stack.project}",
                    f"--bigquery_endpoint={stack.bigquery_endpoint}",
                    "--source_name=Bench",
                ]
            )
            seconds = time.perf_counter() - started
    metrics = counters(result)
    schema_calls = {k: v for k, v in metrics.items() if k.startswith("bigquery_schema_call_")}
    per_10k = 10_000 / args.events
    print(f"events: {args.events}, rows written: {metrics.get('schema_rows_fitted', 0)}")
    print(f"end to end: {seconds:.1f} s, {args.events / seconds:,.0f} events/s")
    print(f"schema API calls: {sum(schema_calls.values())} "
          f"({sum(schema_calls.values()) * per_10k:.1f} per 10,000 events) {schema_calls}")
    inserts = metrics.get("bigquery_insert_requests", 0)
    print(f"insert requests: {inserts} ({inserts * per_10k:.1f} per 10,000 events)")
    merges = metrics.get("bigquery_users_merge_calls", 0)
    print(f"users MERGE calls: {merges} ({merges * per_10k:.1f} per 10,000 events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
