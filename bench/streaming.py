"""Streaming throughput through the DirectRunner into the BigQuery emulator, and
schema updates per table for a burst with schema changes.

    python -m bench.streaming [--events 3000]

Publishes the corpus (new properties and type drift included) to the Pub/Sub
emulator, starts ``opentrack run --streaming`` on its own local stack, and
times until every row the event model expects is queryable. Schema updates per
table are read from the tables' ``opentrack_schema_version`` labels (1 at
creation, +1 per applied change).
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
from google.cloud import pubsub_v1

from bench.corpus import generate
from pipeline import localstack
from pipeline.commands.run import start
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
            started = time.perf_counter()
            result = start(
                [
                    "--streaming",
                    f"--subscription={subscription}",
                    f"--bigquery_project={stack.project}",
                    f"--bigquery_endpoint={stack.bigquery_endpoint}",
                    f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
                    f"--source_name={SOURCE}",
                ]
            )
            complete = False
            try:
                while time.perf_counter() - started < args.timeout:
                    loaded = _counts(client, dataset)
                    if all(loaded.get(t, 0) >= n for t, n in expected.items()):
                        complete = True
                        break
                    time.sleep(2)
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
    print(
        "schema updates per table (changes after creation): "
        + ", ".join(f"{t}={v - 1}" for t, v in sorted(versions.items()))
    )
    return 0


def _counts(client, dataset: str) -> dict[str, int]:  # noqa: ANN001 - bigquery.Client
    counts = {}
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
