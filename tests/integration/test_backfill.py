"""`opentrack backfill` on the GCS and BigQuery emulators: run twice, same tables."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from datetime import date

import orjson
from google.cloud import bigquery

from pipeline.commands import backfill
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name


def _track(n: int, day: str, **properties: object) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"u{n % 3}",
            "messageId": f"{day}-order-{n}",
            "timestamp": f"{day}T10:00:00Z",
            "properties": {"amount": n, **properties},
        }
    )


def _identify(n: int, day: str, plan: str) -> bytes:
    return orjson.dumps(
        {
            "type": "identify",
            "userId": f"u{n}",
            "messageId": f"{day}-identify-{n}",
            "timestamp": f"{day}T09:00:00Z",
            "traits": {"plan": plan},
        }
    )


def snapshot(bq_client: bigquery.Client, dataset: str) -> dict[str, Counter]:
    """Every base table's rows, as a multiset of ids (users: of (id, plan))."""
    tables = {}
    for table in bq_client.list_tables(dataset):
        if table.table_type != "TABLE":
            continue
        target = f"`{bq_client.project}.{dataset}.{table.table_id}`"
        if table.table_id == "users":
            sql = f"SELECT CONCAT(id, ':', plan) AS k FROM {target}"
        elif table.table_id == DEAD_LETTER_TABLE:
            sql = f"SELECT CONCAT(reason, ':', COALESCE(message_id, '-')) AS k FROM {target}"
        else:
            sql = f"SELECT id AS k FROM {target}"
        tables[table.table_id] = Counter(row["k"] for row in bq_client.query(sql).result())
    return tables


def test_backfill_twice_leaves_the_tables_as_one_run_did(
    local_stack, bq_client, gcs_client, capsys
) -> None:
    bucket = gcs_client.create_bucket(f"archive-{uuid.uuid4().hex[:8]}")
    days = {
        "2026-11-01": [_track(n, "2026-11-01") for n in range(6)]
        + [_identify(1, "2026-11-01", "free")],
        "2026-11-02": [_track(n, "2026-11-02", coupon="X") for n in range(4)]
        + [_track(0, "2026-11-02", coupon="X")]  # the same message twice in one day
        + [b"{broken", _identify(1, "2026-11-02", "pro")],
        # 2026-11-03 has no files
        "2026-11-04": [_track(n, "2026-11-04") for n in range(2)],
    }
    for day, lines in days.items():
        blob = bucket.blob(f"events/dt={day}/part-0.jsonl.gz")
        blob.upload_from_string(gzip.compress(b"\n".join(lines) + b"\n"))
    source = f"Backfill {uuid.uuid4().hex[:6]}"
    dataset = dataset_name(source)
    argv = [
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-05",
        "--input-prefix",
        f"gs://{bucket.name}/events/",
        f"--bigquery_project={local_stack.project}",
        f"--bigquery_endpoint={local_stack.bigquery_endpoint}",
        f"--source_name={source}",
    ]

    assert backfill.main(argv) == 0
    first = snapshot(bq_client, dataset)
    assert backfill.main(argv) == 0
    second = snapshot(bq_client, dataset)

    assert second == first
    assert sum(first["order_completed"].values()) == 6 + 4 + 2
    assert set(first["order_completed"].values()) == {1}
    assert first["tracks"] == first["order_completed"]
    assert first["users"] == Counter({"u1:pro": 1})
    assert first[DEAD_LETTER_TABLE] == Counter({"invalid_json:-": 1})
    printed = capsys.readouterr().out
    assert "dt=2026-11-03/*.jsonl*: 0 files" in printed


def test_day_patterns_cover_the_range_inclusive() -> None:
    patterns = backfill.day_patterns("gs://b/events/", date(2026, 11, 30), date(2026, 12, 2))
    assert patterns == [
        "gs://b/events/dt=2026-11-30/*.jsonl*",
        "gs://b/events/dt=2026-12-01/*.jsonl*",
        "gs://b/events/dt=2026-12-02/*.jsonl*",
    ]
