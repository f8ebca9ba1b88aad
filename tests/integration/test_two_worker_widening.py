"""Two pipeline processes on one Pub/Sub subscription while one widens a table to STRING.

The product's claim (``warehouse.fence``): a rewrite fenced through the table's
own label loses nothing even when another worker, in another process, keeps
inserting into the table. Each process here is a separate ``opentrack run
--streaming``; the emulator hands each pulled message to one of them. The table
is made large first so the rewrite takes long enough for inserts to meet it
(without the shared fence, rows inserted during it vanish).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

from tests.integration.test_streaming_pipeline import ids_in, wait_for
from transforms.model.naming import dataset_name

TABLE = "order_completed"
PRELOADED = 3000


COLUMNS = ("amount", "price", "quantity")  # each widened in turn: three rewrites


def _order(n: int, source: str, text: str | None = None) -> bytes:
    properties: dict[str, object] = {column: n for column in COLUMNS}
    if text:
        properties[text] = f"text {n}"
    return orjson.dumps(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"u{n % 5}",
            "messageId": f"order-{n}",
            "properties": properties,
        }
    )


def test_a_widening_by_one_process_loses_no_row_the_other_inserts(
    local_stack, bq_client, pubsub_publisher, pubsub_subscriber, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    source = f"Two Workers {suffix}"
    dataset = dataset_name(source)
    topic = pubsub_publisher.topic_path(local_stack.project, f"two-{suffix}")
    subscription = pubsub_subscriber.subscription_path(local_stack.project, f"two-{suffix}")
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)

    def publish(numbers: range, text: str | None = None) -> None:
        futures = [
            pubsub_publisher.publish(topic, _order(n, source, text), source=source) for n in numbers
        ]
        for future in futures:
            future.result(timeout=30)

    command = [
        sys.executable,
        "-m",
        "pipeline.commands.cli",
        "run",
        "--streaming",
        f"--subscription={subscription}",
        f"--bigquery_project={local_stack.project}",
        f"--bigquery_endpoint={local_stack.bigquery_endpoint}",
        "--write_method=STREAMING_INSERTS",
        f"--source_name={source}",
        "--schema_cache_ttl_seconds=3",
        "--mutation_batch_seconds=0.5",
        "--rewrite_drain_seconds=2",
        "--schema_retry_delays=1,3",
    ]
    logs = [open(tmp_path / f"worker{n}.log", "wb") for n in range(2)]  # noqa: SIM115
    workers = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        # Both workers know the table as INTEGER, then it grows so a rewrite takes a while.
        publish(range(40))
        wait_for(lambda: len(ids_in(bq_client, dataset, TABLE)) == 40, "the first 40 orders")
        table = f"{local_stack.project}.{dataset}.{TABLE}"
        bulk = [
            {"id": f"bulk-{n}", "event": "order_completed", **{c: n for c in COLUMNS}}
            for n in range(PRELOADED)
        ]
        assert not bq_client.insert_rows_json(table, bulk)

        # Integers keep coming to both workers while the columns meet strings one by one.
        numbers = range(100, 400)
        writer = threading.Thread(
            target=lambda: [publish(range(n, n + 5)) or time.sleep(0.1) for n in numbers[::5]]
        )
        writer.start()
        for column, first in zip(COLUMNS, (40, 45, 50), strict=True):
            time.sleep(2.0)
            publish(range(first, first + 5), text=column)
        writer.join()

        expected = {f"order-{n}" for n in [*range(55), *numbers]}
        # Generous: a rewrite holds the table's rows for TTL + drain, and a busy emulator
        # (late in a full suite) answers slowly; on an idle machine this takes ~40 s.
        wait_for(
            lambda: set(ids_in(bq_client, dataset, TABLE)) >= expected, "every order", timeout=300
        )
        time.sleep(3)  # a late duplicate would land by now
    finally:
        for worker in workers:
            worker.terminate()
        for worker, log in zip(workers, logs, strict=True):
            worker.wait(timeout=30)
            log.close()

    kinds = {f.name: f.field_type for f in bq_client.get_table(table).schema}
    assert all(kinds[c] == "STRING" for c in COLUMNS), "the strings widened the columns"
    in_view = [i for i in ids_in(bq_client, dataset, f"{TABLE}_view") if i.startswith("order-")]
    assert sorted(in_view) == sorted(expected), "every message once in the view, none lost"
    bulk_left = [i for i in ids_in(bq_client, dataset, TABLE) if i.startswith("bulk-")]
    assert len(bulk_left) == PRELOADED
    logs_text = [(tmp_path / f"worker{n}.log").read_bytes() for n in (0, 1)]
    rewrites = [text.count(b"fenced for a rewrite") for text in logs_text]
    holds = [text.count(b"holding its rows while a worker rewrites it") for text in logs_text]
    assert sum(rewrites) >= len(COLUMNS), "each column was widened by a fenced rewrite"
    took_part = [r + h for r, h in zip(rewrites, holds, strict=True)]
    assert sum(holds) and all(took_part), (
        f"a process held rows while the other rewrote (rewrites {rewrites}, holds {holds})"
    )
