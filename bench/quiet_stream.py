"""How soon one event on a quiet stream is queryable, on the local stack.

    python -m bench.quiet_stream [--pause 20] [--write_method M]

Starts ``opentrack run --streaming`` on an empty subscription, waits ``--pause``
seconds, publishes one track event and times until its row is in the table; then
does it again, the table now made (the first time includes creating the dataset,
the tables and the views).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from google.cloud import bigquery, pubsub_v1

from pipeline import localstack
from pipeline.commands.run import start
from pipeline.warehouse.client import make_client

SOURCE = "Quiet Bench"
DATASET = "quiet_bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--write_method", default="STORAGE_WRITE_API")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opentrack-quiet-bench-") as scratch:
        stack_dir = Path(scratch) / "stack"
        with localstack.running(stack_dir, install_dir=localstack.default_state_dir()) as stack:
            os.environ.update(localstack.environment(stack))
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            topic = publisher.topic_path(stack.project, "quiet-events")
            subscription = subscriber.subscription_path(stack.project, "quiet-events")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription, topic=topic)
            client = make_client(stack.project, stack.bigquery_endpoint)
            result = start(
                [
                    "--streaming",
                    f"--subscription={subscription}",
                    f"--bigquery_project={stack.project}",
                    f"--bigquery_endpoint={stack.bigquery_endpoint}",
                    f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
                    f"--source_name={SOURCE}",
                    f"--write_method={args.write_method}",
                ]
            )
            try:
                for attempt in ("first event (dataset and tables made)", "second event"):
                    time.sleep(args.pause)
                    seconds = _one_event(publisher, topic, client, args.timeout)
                    print(f"{attempt}: queryable after {seconds:.1f} s")
            finally:
                result.cancel()
    return 0


def _one_event(
    publisher: pubsub_v1.PublisherClient, topic: str, client: bigquery.Client, timeout: float
) -> float:
    message_id = uuid.uuid4().hex
    event = {"type": "track", "event": "Quiet Ping", "userId": "u1", "messageId": message_id}
    started = time.perf_counter()
    publisher.publish(topic, orjson.dumps(event)).result(timeout=30)
    sql = f"SELECT COUNT(*) AS n FROM `{client.project}.{DATASET}.tracks` WHERE id = @id"
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("id", "STRING", message_id)]
    )
    while time.perf_counter() - started < timeout:
        try:
            if list(client.query(sql, job_config=config).result())[0]["n"]:
                return time.perf_counter() - started
        except Exception:  # noqa: BLE001 - the table is not made yet
            pass
        time.sleep(0.25)
    raise SystemExit(f"the event was not queryable after {timeout:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
