"""`opentrack run` end to end: files -> pipeline (FnApiRunner) -> the BigQuery emulator."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from google.cloud import bigquery

from bench.corpus import generate
from pipeline.commands.run import counters, run
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DEAD_LETTER_SCHEMA, DeadLetter
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.route import SourceConfig

_sources = itertools.count()
SECONDARY = ("tracks", "users", DEAD_LETTER_TABLE)


def source_name(prefix: str) -> str:
    return f"{prefix} {next(_sources)} {datetime.now().strftime('%H%M%S%f')}"


def run_pipeline(stack, input_path: str | Path, source: str, *extra: str):  # noqa: ANN001, ANN201
    return run(
        [
            f"--input={input_path}",
            f"--bigquery_project={stack.project}",
            f"--bigquery_endpoint={stack.bigquery_endpoint}",
            f"--source_name={source}",
            *extra,
        ]
    )


def table_counts(bq_client: bigquery.Client, dataset: str) -> dict[str, int]:
    counts = {}
    for table in bq_client.list_tables(dataset):
        if table.table_type != "TABLE":
            continue  # the dedup views
        sql = f"SELECT COUNT(*) AS n FROM `{bq_client.project}.{dataset}.{table.table_id}`"
        counts[table.table_id] = list(bq_client.query(sql).result())[0].n
    return counts


def query(bq_client: bigquery.Client, sql: str) -> list[dict]:
    return [dict(row) for row in bq_client.query(sql).result()]


def dead_letters_by_id(bq_client: bigquery.Client, dataset: str) -> dict[str, dict]:
    """The dead letters of ``dataset`` by message id: stage, reason, error."""
    sql = (
        f"SELECT message_id, stage, reason, error FROM "
        f"`{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`"
    )
    return {r["message_id"]: r for r in query(bq_client, sql)}


DRIFT = [
    {
        "type": "track",
        "event": "Plan Chosen",
        "userId": "d1",
        "messageId": "drift-1",
        "properties": {"seats": 3, "level": 1},
    },
    {
        "type": "track",
        "event": "Plan Chosen",
        "userId": "d2",
        "messageId": "drift-2",
        "properties": {"seats": 2.5, "level": 2.5},
    },
    {
        "type": "track",
        "event": "Plan Chosen",
        "userId": "d3",
        "messageId": "drift-3",
        "properties": {"seats": "unlimited", "level": 4},
    },
]
BAD_LINES = [
    b"\xff\xfe not utf-8",
    b"{truncated",
    b"[]",
    b'{"type": "track", "userId": "u"}',
    b'{"type": "teleport", "userId": "u"}',
    b'{"type": "page", "anonymousId": "a", "timestamp": 12}',
    b'{"batch": [{"type": "page", "anonymousId": "x", "messageId": "in-batch"}, '
    b'{"type": "alias"}]}',
]


def write_corpus(path: Path) -> list[bytes]:
    lines = generate(400, seed=23)
    for position, bad in enumerate(BAD_LINES):
        lines.insert(position * 50 + 7, bad)
    lines += [orjson.dumps(event) for event in DRIFT]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def expected_from_model(lines: list[bytes], source: str) -> tuple[Counter[str], int, int, int]:
    """Rows per table, dead letters and distinct users the pure event model makes of ``lines``."""
    config = ModelConfig(sources=SourceConfig(default_source=source))
    now = datetime.now(UTC)
    per_table: Counter[str] = Counter()
    users: set[str] = set()
    dead = 0
    for line in lines:
        for item in process_payload(RawMessage(line), now, "2026-01-01T00:00:00.000000Z", config):
            if isinstance(item, DeadLetter):
                dead += 1
            else:
                per_table[item.table] += 1
                if item.table == "users":
                    users.add(item.row["id"])
    events = len(lines) - 1 + 2  # the batch line holds two events
    return per_table, dead, events, len(users)


def test_corpus_with_bad_lines_and_drift_loads_every_event_once(
    local_stack, bq_client, tmp_path: Path
) -> None:
    source = source_name("Batch Corpus")
    lines = write_corpus(tmp_path / "events.jsonl")
    per_table, expected_dead, input_events, distinct_users = expected_from_model(lines, source)

    result = run_pipeline(local_stack, tmp_path / "events.jsonl", source)

    dataset = source.lower().replace(" ", "_")
    counts = table_counts(bq_client, dataset)
    assert counts.pop("users") == distinct_users, "users must hold one row per user id"
    loaded = {table: n for table, n in counts.items() if table != DEAD_LETTER_TABLE}
    expected_tables = {t: n for t, n in per_table.items() if t != "users"}
    assert loaded == expected_tables, "rows per table differ from the event model's"
    assert counts[DEAD_LETTER_TABLE] == expected_dead == len(BAD_LINES)

    primary = sum(n for table, n in loaded.items() if table not in SECONDARY)
    assert primary + counts[DEAD_LETTER_TABLE] == input_events

    distinct = query(
        bq_client,
        "SELECT COUNT(DISTINCT id) AS ids, COUNT(*) AS n "
        f"FROM `{bq_client.project}.{dataset}.tracks`",
    )[0]
    assert distinct["ids"] == distinct["n"], "a track event was loaded twice"

    chosen = bq_client.get_table(f"{bq_client.project}.{dataset}.plan_chosen")
    types = {f.name: f.field_type for f in chosen.schema}
    assert types["seats"] == "STRING" and types["level"] == "FLOAT"
    drift_rows = query(
        bq_client,
        f"SELECT id, seats, level FROM `{bq_client.project}.{dataset}.plan_chosen` ORDER BY id",
    )
    assert [(r["id"], r["seats"], r["level"]) for r in drift_rows] == [
        ("drift-1", "3", 1.0),
        ("drift-2", "2.5", 2.5),
        ("drift-3", "unlimited", 4.0),
    ]

    reasons = Counter(
        r["reason"]
        for r in query(
            bq_client, f"SELECT reason FROM `{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`"
        )
    )
    assert reasons == Counter(
        {
            "invalid_encoding": 1,
            "invalid_json": 1,
            "not_an_object": 1,
            "missing_event": 1,
            "unknown_type": 1,
            "invalid_timestamp": 1,
            "missing_identity": 1,
        }
    )
    metrics = counters(result)
    assert metrics.get("dead_letters_not_stored", 0) == 0
    assert metrics["bigquery_schema_call_create_table"] == len(counts) + 1  # + users


def test_users_merge_keeps_latest_traits_one_row_per_user(
    local_stack, bq_client, tmp_path: Path
) -> None:
    source = source_name("Users Merge")
    first = [
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "i1",
            "timestamp": "2026-11-01T10:00:00Z",
            "traits": {"plan": "free", "logins": 1},
        },
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "i2",
            "timestamp": "2026-11-01T11:00:00Z",
            "traits": {"plan": "starter"},
        },
        {
            "type": "identify",
            "userId": "u2",
            "messageId": "i3",
            "timestamp": "2026-11-01T10:00:00Z",
            "traits": {"plan": "free"},
        },
        {"type": "identify", "anonymousId": "anon", "messageId": "i4", "traits": {"plan": "x"}},
    ]
    second = [
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "i5",
            "timestamp": "2026-11-02T10:00:00Z",
            "traits": {"plan": "pro"},
        },
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "i6",
            "timestamp": "2026-10-01T10:00:00Z",
            "traits": {"plan": "ancient", "company": "Acme"},
        },
    ]
    for index, events in enumerate((first, second)):
        path = tmp_path / f"identify-{index}.jsonl"
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
        run_pipeline(local_stack, path, source)

    dataset = source.lower().replace(" ", "_")
    users = query(
        bq_client,
        f"SELECT id, plan, logins, company FROM `{bq_client.project}.{dataset}.users` ORDER BY id",
    )
    assert users == [
        {"id": "u1", "plan": "pro", "logins": 1, "company": "Acme"},
        {"id": "u2", "plan": "free", "logins": None, "company": None},
    ]
    assert table_counts(bq_client, dataset)["identifies"] == 6


@pytest.fixture
def manual_dataset(bq_client: bigquery.Client) -> str:
    """A hand-made dataset: `pages` with a few columns and the dead-letter table."""
    dataset = f"manual_{next(_sources)}_{datetime.now().strftime('%H%M%S%f')}"
    bq_client.create_dataset(dataset)
    pages = {
        name: kind
        for name, kind in {
            "id": "STRING",
            "anonymous_id": "STRING",
            "received_at": "TIMESTAMP",
            "timestamp": "TIMESTAMP",
            "uuid_ts": "TIMESTAMP",
            "loaded_at": "TIMESTAMP",
            "name": "STRING",
            "path": "STRING",
        }.items()
    }
    create_tables(bq_client, dataset, {"pages": pages, DEAD_LETTER_TABLE: DEAD_LETTER_SCHEMA})
    return dataset


def create_tables(
    bq_client: bigquery.Client, dataset: str, tables: dict[str, dict[str, str]]
) -> None:
    """Hand-made tables ({table: {column: type}}), as a user of manual mode makes them."""
    for table, schema in tables.items():
        bq_client.create_table(
            bigquery.Table(
                f"{bq_client.project}.{dataset}.{table}",
                schema=[bigquery.SchemaField(n, k) for n, k in schema.items()],
            )
        )


@pytest.mark.parametrize(
    ("switch", "method", "reason"),
    [
        ("option", "FILE_LOADS", "load_rejected"),
        ("environment", "FILE_LOADS", "load_rejected"),
        ("option", "STREAMING_INSERTS", "write_rejected"),
    ],
)
def test_manual_mode_changes_nothing_and_dead_letters_carry_bigquerys_error(
    local_stack,
    bq_client,
    manual_dataset: str,
    tmp_path: Path,
    monkeypatch,
    switch: str,
    method: str,
    reason: str,
) -> None:
    events = [
        {
            "type": "page",
            "anonymousId": "a",
            "messageId": "fits",
            "name": "Home",
            "properties": {"path": "/"},
        },
        {
            "type": "page",
            "anonymousId": "a",
            "messageId": "new-column",
            "name": "Home",
            "properties": {"path": "/", "title": "Home"},
        },
        {"type": "screen", "anonymousId": "a", "messageId": "no-table", "name": "Home"},
    ]
    path = tmp_path / "manual.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    extra = [f"--write_method={method}", "--auto_table_management=false"]
    if switch == "environment":
        monkeypatch.setenv("BIGQUERY_AUTO_TABLE_MANAGEMENT", "false")
        extra = extra[:1]
    tables_before = {t.table_id for t in bq_client.list_tables(manual_dataset)}
    schema_before = bq_client.get_table(f"{bq_client.project}.{manual_dataset}.pages").schema

    run_pipeline(local_stack, path, manual_dataset, *extra)

    assert {t.table_id for t in bq_client.list_tables(manual_dataset)} == tables_before
    assert (
        bq_client.get_table(f"{bq_client.project}.{manual_dataset}.pages").schema == schema_before
    )
    loaded = query(bq_client, f"SELECT id FROM `{bq_client.project}.{manual_dataset}.pages`")
    assert loaded == [{"id": "fits"}]
    dead = dead_letters_by_id(bq_client, manual_dataset)
    assert set(dead) == {"new-column", "no-table"}
    assert all(d["stage"] == "write" and d["reason"] == reason for d in dead.values())
    assert "no such field" in dead["new-column"]["error"].lower()
    assert "not found" in dead["no-table"]["error"].lower()


def test_reads_gzipped_files_from_gcs(local_stack, bq_client, gcs_client, tmp_path: Path) -> None:
    import gzip

    bucket = gcs_client.create_bucket(f"events-{next(_sources)}")
    events = [
        {"type": "page", "anonymousId": "g", "messageId": f"gcs-{n}", "name": "Home"}
        for n in range(5)
    ]
    payload = gzip.compress(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    bucket.blob("dt=2026-11-01/part-0.jsonl.gz").upload_from_string(payload)
    source = source_name("Gcs Input")

    run_pipeline(local_stack, f"gs://{bucket.name}/dt=2026-11-01/*.jsonl.gz", source)

    dataset = source.lower().replace(" ", "_")
    assert table_counts(bq_client, dataset)["pages"] == 5


def test_a_table_past_its_column_limit_degrades_to_dead_letters_and_the_run_goes_on(
    local_stack, bq_client, tmp_path: Path
) -> None:
    source = source_name("Column Limit")
    events = [
        {
            "type": "track",
            "event": "Wide Event",
            "userId": "w",
            "messageId": f"wide-{n}",
            "properties": {f"p{n}_{k}": k for k in range(3)},
        }
        for n in range(10)
    ]
    path = tmp_path / "wide.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    limit = 20  # 8 common columns (id, user_id, event, event_text, 4 timestamps) + 12 properties

    result = run_pipeline(local_stack, path, source, f"--max_columns={limit}")

    dataset = source.lower().replace(" ", "_")
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.wide_event")
    assert len(table.schema) == limit
    loaded = table_counts(bq_client, dataset)["wide_event"]
    refused = query(
        bq_client,
        f"SELECT reason, stage FROM `{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`",
    )
    assert loaded == 4 and len(refused) == 6  # 12 property columns fit: 4 events of 3 each
    assert {(r["reason"], r["stage"]) for r in refused} == {("column_limit", "schema")}
    assert loaded + len(refused) == len(events)
    assert table_counts(bq_client, dataset)["tracks"] == len(events)  # no properties there
    assert counters(result)["schema_dead_letters"] == 6
