"""The Storage Write API path on the emulator's gRPC port: committed streams, offsets,
refused rows, and answers lost on the way back (a loopback TCP proxy resets them)."""

from __future__ import annotations

from pathlib import Path

import orjson
from google.cloud import bigquery

from pipeline.commands.run import counters
from pipeline.warehouse import storage_write
from tests.faults.tcp_proxy import DroppingProxy
from tests.integration.test_batch_pipeline import (
    create_tables,
    query,
    run_pipeline,
    source_name,
)
from tests.integration.test_faults import base_duplicates, check_every_event_once, write_corpus
from tests.integration.test_load_jobs import page
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name


def storage_run(stack, path: Path, source: str, endpoint: str, *extra: str):  # noqa: ANN001, ANN201
    return run_pipeline(
        stack, path, source, "--write_method=STORAGE_WRITE_API",
        f"--bigquery_storage_endpoint={endpoint}", *extra,
    )  # fmt: skip


def test_a_repeated_offset_is_answered_already_exists_and_adds_nothing(
    local_stack, bq_client
) -> None:
    dataset = dataset_name(source_name("swa offsets"))
    bq_client.create_dataset(dataset)
    schema = {"id": "STRING", "n": "INTEGER", "ts": "TIMESTAMP"}
    bq_client.create_table(
        bigquery.Table(
            f"{bq_client.project}.{dataset}.t",
            schema=[bigquery.SchemaField(k, v) for k, v in schema.items()],
        )
    )
    client = storage_write.write_client(local_stack.bigquery_grpc_endpoint)
    codec = storage_write.codec_for(schema)
    stream = storage_write.create_stream(
        client, storage_write.table_path(bq_client.project, dataset, "t")
    )
    rows = [codec.encode({"id": f"r{n}", "n": n, "ts": "2026-11-01T10:00:00.000000Z"})
            for n in range(3)]  # fmt: skip

    first = storage_write.append(client, stream, codec, rows, 0)
    again = storage_write.append(client, stream, codec, rows, 0)  # a resent request
    more = storage_write.append(client, stream, codec, rows[:1], 3)

    assert (first.written, first.refused, again.written, more.written) == (3, {}, 3, 1)
    loaded = query(bq_client, f"SELECT id, n FROM `{bq_client.project}.{dataset}.t` ORDER BY n")
    assert [r["id"] for r in loaded] == ["r0", "r0", "r1", "r2"]  # r0 twice: offset 3 was new


def test_batch_corpus_loads_every_event_once(local_stack, bq_client, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = write_corpus(path)
    source = source_name("Swa Corpus")

    seen = counters(storage_run(local_stack, path, source, local_stack.bigquery_grpc_endpoint))

    check_every_event_once(bq_client, lines, source)
    assert base_duplicates(bq_client, source) == {}
    assert seen["storage_write_rows"] > 0 and "bigquery_insert_requests" not in seen


def test_answers_lost_mid_stream_are_resent_and_nothing_is_doubled(
    local_stack, bq_client, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    lines = write_corpus(path)
    source = source_name("Swa Lost Answers")

    with DroppingProxy(local_stack.bigquery_grpc_endpoint, resets=3) as proxy:
        storage_run(local_stack, path, source, proxy.endpoint, "--request_timeout_seconds=5")

    assert proxy.dropped >= 2, f"too few answers lost to mean anything: {proxy.dropped}"
    check_every_event_once(bq_client, lines, source)
    assert base_duplicates(bq_client, source) == {}, "a resent append landed twice"


def test_rows_bigquery_refuses_become_dead_letters_holding_the_event(
    local_stack, bq_client, tmp_path: Path
) -> None:
    """Manual mode, `pages.name` REQUIRED: the page without a name is refused by BigQuery
    (row_errors: the request wrote nothing); the others are sent again and land."""
    dataset = dataset_name(source_name("swa refused"))
    bq_client.create_dataset(dataset)
    columns = ["id", "anonymous_id", "received_at", "timestamp", "original_timestamp", "uuid_ts",
               "loaded_at"]  # fmt: skip
    pages = [bigquery.SchemaField(c, "TIMESTAMP" if c not in ("id", "anonymous_id") else "STRING")
             for c in columns]  # fmt: skip
    pages += [bigquery.SchemaField("name", "STRING", mode="REQUIRED")]
    bq_client.create_table(bigquery.Table(f"{bq_client.project}.{dataset}.pages", schema=pages))
    create_tables(bq_client, dataset, {DEAD_LETTER_TABLE: DEAD_LETTER_SCHEMA})
    nameless = orjson.dumps(
        {"type": "page", "anonymousId": "a", "messageId": "nameless",
         "timestamp": "2026-11-01T10:00:00Z"}
    )  # fmt: skip
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b"\n".join([page("named-1"), nameless, page("named-2")]))

    storage_run(
        local_stack, path, dataset, local_stack.bigquery_grpc_endpoint,
        "--auto_table_management=false",
    )  # fmt: skip

    loaded = query(bq_client, f"SELECT id FROM `{bq_client.project}.{dataset}.pages` ORDER BY id")
    assert [r["id"] for r in loaded] == ["named-1", "named-2"]
    dead = query(
        bq_client,
        f"SELECT message_id, reason, error, payload FROM "
        f"`{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`",
    )
    assert [(d["message_id"], d["reason"]) for d in dead] == [("nameless", "write_rejected")]
    assert dead[0]["payload"] == nameless.decode() and "name" in dead[0]["error"]
