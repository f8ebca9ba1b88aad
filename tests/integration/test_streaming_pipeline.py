"""`opentrack run --streaming` against the Pub/Sub and BigQuery emulators.

A burst over several sources, with new properties mid-stream, INTEGER -> FLOAT
and number -> string drift (a table rewrite while rows keep coming),
duplicates and bad messages. The test waits until every expected row is
queryable, cancels the pipeline, and checks that each valid message is in its
tables exactly once, each bad one is one dead letter, and nothing was lost
across the widening.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import orjson
import pytest
from google.cloud import bigquery

from pipeline.commands.run import start
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name
from transforms.model.route import SourceConfig

DEFAULT_SOURCE = "Stream Default"
TIMEOUT_S = 90


def _order(n: int, amount: object, source: str, **extra: object) -> tuple[bytes, dict]:
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n % 7}",
        "messageId": f"order-{n}",
        "properties": {"amount": amount, **extra},
    }
    return orjson.dumps(event), {"source": source}


def _identify(n: int, plan: str, source: str, at: str) -> tuple[bytes, dict]:
    event = {
        "type": "identify",
        "userId": f"u{n}",
        "messageId": f"identify-{n}-{plan}",
        "timestamp": at,
        "traits": {"plan": plan},
    }
    return orjson.dumps(event), {"source": source}


def _page(n: int, source: str) -> tuple[bytes, dict]:
    event = {"type": "page", "anonymousId": f"a{n}", "messageId": f"page-{n}", "name": "Home"}
    return orjson.dumps(event), {"source": source}


def expected_rows(
    messages: list[tuple[bytes, dict]], default_source: str = DEFAULT_SOURCE
) -> tuple[dict, int]:
    """(dataset, table) -> ids the event model makes of ``messages`` (set: duplicates
    collapse), and the number of dead letters."""
    config = ModelConfig(sources=SourceConfig(default_source=default_source))
    now = datetime.now(UTC)
    tables: dict[tuple[str, str], set[str]] = defaultdict(set)
    dead = 0
    for payload, attributes in messages:
        for item in process_payload(RawMessage(payload, attributes), now, "x", config):
            if isinstance(item, DeadLetter):
                dead += 1
            elif item.table != "users":
                tables[(item.dataset, item.table)].add(item.row["id"])
    return tables, dead


def ids_in(bq_client: bigquery.Client, dataset: str, table: str) -> list[str]:
    try:
        sql = f"SELECT id FROM `{bq_client.project}.{dataset}.{table}`"
        return [row["id"] for row in bq_client.query(sql).result()]
    except Exception:  # noqa: BLE001 - table not made yet
        return []


def wait_for(condition, what: str, timeout: float = TIMEOUT_S) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.parametrize("method", ["STREAMING_INSERTS", "STORAGE_WRITE_API"])
def test_streaming_burst_loads_every_message_once_across_schema_changes(
    local_stack, bq_client, pubsub_publisher, pubsub_subscriber, method: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    web, app = f"Web {suffix}", f"App {suffix}"
    default = f"{DEFAULT_SOURCE} {suffix}"  # each run its own datasets, even the default one
    topic = pubsub_publisher.topic_path(local_stack.project, f"events-{suffix}")
    subscription = pubsub_subscriber.subscription_path(local_stack.project, f"events-{suffix}")
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)

    def publish(messages: list[tuple[bytes, dict]]) -> None:
        futures = [pubsub_publisher.publish(topic, data, **attrs) for data, attrs in messages]
        for future in futures:
            future.result(timeout=30)

    result = start(
        [
            "--streaming",
            f"--subscription={subscription}",
            f"--bigquery_project={local_stack.project}",
            f"--bigquery_endpoint={local_stack.bigquery_endpoint}",
            f"--bigquery_storage_endpoint={local_stack.bigquery_grpc_endpoint}",
            f"--write_method={method}",
            f"--source_name={default}",
            "--schema_cache_ttl_seconds=5",
            "--users_merge_interval_seconds=2",
            "--schema_retry_delays=1,3",
            "--mutation_batch_seconds=0.5",
            "--rewrite_drain_seconds=1",
        ]
    )
    sent: list[tuple[bytes, dict]] = []
    web_ds = dataset_name(web)
    try:
        # Phase 1: integers, two sources, users.
        phase1 = [_order(n, n * 10, web) for n in range(20)]
        phase1 += [_page(n, app) for n in range(10)]
        phase1 += [_identify(n, "free", web, "2026-11-01T10:00:00Z") for n in range(5)]
        publish(phase1)
        sent += phase1
        wait_for(lambda: len(ids_in(bq_client, web_ds, "order_completed")) == 20, "phase 1 orders")

        # Phase 2: a new property, INTEGER -> FLOAT, duplicates, bad messages, newer traits.
        phase2 = [_order(n, n + 0.5, web, coupon="AUTUMN") for n in range(20, 30)]
        phase2 += phase1[:5]  # duplicates of messages already loaded
        phase2 += [_identify(n, "pro", web, "2026-11-02T10:00:00Z") for n in range(3)]
        bad = [
            (b"{not json", {"source": web}),
            (orjson.dumps({"type": "track", "event": "X", "messageId": "no-id"}), {"source": web}),
            (orjson.dumps({"type": "page", "anonymousId": "z", "messageId": "nosrc"}), {}),
        ]
        publish(phase2 + bad)
        sent += phase2 + bad
        wait_for(lambda: len(ids_in(bq_client, web_ds, "order_completed")) == 30, "phase 2 orders")

        # Phase 3: number -> string while integers keep coming (a rewrite under load).
        strings = [_order(n, "free", web) for n in range(30, 40)]
        numbers = [_order(n, n, web) for n in range(40, 80)]
        writer = threading.Thread(
            target=lambda: [publish([m]) or time.sleep(0.05) for m in numbers]
        )
        writer.start()
        time.sleep(0.5)
        publish(strings)
        writer.join()
        sent += strings + numbers

        expected, expected_dead = expected_rows(sent, default)

        def all_loaded() -> bool:
            return all(
                set(ids_in(bq_client, dataset, table)) >= ids
                for (dataset, table), ids in expected.items()
            )

        wait_for(all_loaded, "every expected row")
        time.sleep(3)  # anything late (a duplicate, a retry) would land by now
    finally:
        result.cancel()

    for (dataset, table), ids in expected.items():
        loaded = ids_in(bq_client, dataset, table)
        assert sorted(loaded) == sorted(ids), f"{dataset}.{table}: each message exactly once"
        view = ids_in(bq_client, dataset, f"{table}_view")
        assert sorted(view) == sorted(ids), f"{dataset}.{table}_view"

    orders = bq_client.get_table(f"{bq_client.project}.{web_ds}.order_completed")
    types = {f.name: f.field_type for f in orders.schema}
    assert types["amount"] == "STRING" and types["coupon"] == "STRING"
    amounts = {
        row["id"]: row["amount"]
        for row in bq_client.query(
            f"SELECT id, amount FROM `{bq_client.project}.{web_ds}.order_completed`"
        ).result()
    }
    assert amounts["order-3"] == "30" and amounts["order-21"] == "21.5"
    assert amounts["order-35"] == "free" and amounts["order-79"] == "79"

    dead = [
        row["reason"]
        for row in bq_client.query(
            f"SELECT reason FROM `{bq_client.project}.{web_ds}.{DEAD_LETTER_TABLE}`"
        ).result()
    ]
    assert sorted(dead) == ["invalid_json", "missing_identity"] and expected_dead == 2

    users = {
        row["id"]: row["plan"]
        for row in bq_client.query(
            f"SELECT id, plan FROM `{bq_client.project}.{web_ds}.users`"
        ).result()
    }
    assert users == {"u0": "pro", "u1": "pro", "u2": "pro", "u3": "free", "u4": "free"}

    # The five re-published orders (phase 2) are in `sent` twice but loaded once (above).
    assert sum(1 for payload, _ in sent if b'"order-0"' in payload) == 2
