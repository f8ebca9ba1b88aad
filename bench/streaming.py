"""Streaming throughput through the DirectRunner into the BigQuery emulator, and
schema updates per table for a burst with schema changes.

    python -m bench.streaming [--events 3000] [--write_method M]

Publishes the corpus (new properties and type drift included) to the Pub/Sub
emulator, starts ``opentrack run --streaming`` on its own local stack, and
times until every row the event model expects is queryable. Schema updates per
table are read from the tables' ``opentrack_schema_version`` labels (1 at
creation, +1 per applied change). It also prints the graph's steps below the
read, the runner's bundle runs per pull, the sink's calls and rows per call, and
how the time splits between the sink, the pulls and the rest (``bench.runner_probe``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from google.api_core.exceptions import NotFound
from google.cloud import bigquery, pubsub_v1

from bench.corpus import generate
from bench.runner_probe import leaf_transforms, probe
from pipeline import localstack
from pipeline.commands.run import pipeline_options, start
from pipeline.warehouse.client import make_client
from pipeline.warehouse.manager import SCHEMA_VERSION_LABEL
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter
from transforms.model.route import SourceConfig

SOURCE = "Stream Bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--write_method", default="STORAGE_WRITE_API")
    args = parser.parse_args(argv)
    lines = generate(args.events, seed=9)
    config = ModelConfig(sources=SourceConfig(default_source=SOURCE))
    expected: Counter[str] = Counter()
    for line in lines:
        for item in process_payload(RawMessage(line), datetime.now(UTC), "x", config):
            if not isinstance(item, DeadLetter) and item.table != "users":
                expected[item.table] += 1
    with tempfile.TemporaryDirectory(prefix="opentrack-stream-bench-") as scratch:
        stack_dir = Path(scratch) / "stack"
        with localstack.running(stack_dir, install_dir=localstack.default_state_dir()) as stack:
            os.environ.update(localstack.environment(stack))
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            topic = publisher.topic_path(stack.project, "bench-events")
            subscription = subscriber.subscription_path(stack.project, "bench-events")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription, topic=topic)
            for future in [publisher.publish(topic, line) for line in lines]:
                future.result(timeout=60)
            client = make_client(stack.project, stack.bigquery_endpoint)
            dataset = "stream_bench"
            argv = [
                "--streaming",
                f"--subscription={subscription}",
                f"--bigquery_project={stack.project}",
                f"--bigquery_endpoint={stack.bigquery_endpoint}",
                f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
                f"--source_name={SOURCE}",
                f"--write_method={args.write_method}",
            ]
            steps = leaf_transforms(pipeline_options(argv))
            with probe() as found:
                started = time.perf_counter()
                result = start(argv)
                try:
                    complete, loaded = _wait_for(client, dataset, expected, started, args.timeout)
                    seconds = time.perf_counter() - started
                    done = sum(min(loaded.get(t, 0), n) for t, n in expected.items())
                    versions = {
                        t.table_id: int(client.get_table(t).labels.get(SCHEMA_VERSION_LABEL, "1"))
                        for t in client.list_tables(dataset)
                        if t.table_type == "TABLE" and not t.table_id.startswith("_opentrack_users")
                    }
                finally:
                    result.cancel()
    rows = sum(expected.values())
    print(f"events: {args.events} published before start, {rows} rows expected")
    if complete:
        print(
            f"all rows queryable after {seconds:.1f} s: {args.events / seconds:,.1f} events/s "
            f"({rows / seconds:,.1f} rows/s)"
        )
    else:
        print(
            f"TIMED OUT after {seconds:.1f} s with {done} of {rows} rows queryable: "
            f"{done / seconds:,.1f} rows/s"
        )
    print(f"graph: {steps} steps below the read ({args.write_method})")
    for line in found.report(seconds):
        print(line)
    print(
        "schema updates per table (changes after creation): "
        + ", ".join(f"{t}={v - 1}" for t, v in sorted(versions.items()))
    )
    return 0


def _wait_for(
    client: bigquery.Client, dataset: str, expected: Counter[str], started: float, timeout: float
) -> tuple[bool, dict[str, int]]:
    """Whether every expected row became queryable within ``timeout``; the counts seen."""
    loaded: dict[str, int] = {}
    while time.perf_counter() - started < timeout:
        loaded = _counts(client, dataset)
        if all(loaded.get(t, 0) >= n for t, n in expected.items()):
            return True, loaded
        time.sleep(2)
    return False, loaded


def _counts(client: bigquery.Client, dataset: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        tables = [t for t in client.list_tables(dataset) if t.table_type == "TABLE"]
    except Exception:  # noqa: BLE001 - dataset not made yet
        return counts
    for table in tables:
        if table.table_id.startswith("_opentrack_users_staging"):
            continue  # short-lived MERGE staging tables
        sql = f"SELECT COUNT(*) AS n FROM `{client.project}.{dataset}.{table.table_id}`"
        try:
            counts[table.table_id] = list(client.query(sql).result())[0]["n"]
        except NotFound:
            continue
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
