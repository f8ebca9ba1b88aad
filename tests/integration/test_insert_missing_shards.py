"""insert_missing_by_id in shards: each shard stages and MERGEs on its own, copies of an
id always meet in one shard, and a second pass adds nothing."""

from __future__ import annotations

import uuid

import apache_beam as beam
from google.cloud import bigquery

from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SchemaManager
from tests.conftest import make_test_pipeline
from transforms.beam.sharding import shard_of
from transforms.beam.write import InsertMissingById
from transforms.model.normalize import TableRow

SCHEMA = {"id": "STRING", "loaded_at": "TIMESTAMP", "n": "INTEGER"}
SHARDS = 4


def _rows(dataset: str, ids: range, copies: int) -> list[TableRow]:
    return [
        TableRow(dataset, "t", {"id": f"e{i}", "loaded_at": f"2026-11-0{c + 1}T00:00:00Z", "n": i},
                 SCHEMA)
        for i in ids for c in range(copies)
    ]  # fmt: skip


def _run(warehouse: WarehouseConfig, rows: list[TableRow], dataset: str) -> None:
    with make_test_pipeline() as pipeline:
        schemas = pipeline | "Schemas" >> beam.Create([((dataset, "t"), (SCHEMA, {}))])
        _ = (
            pipeline
            | "Rows" >> beam.Create(rows)
            | InsertMissingById(warehouse, schemas, shards=SHARDS)
        )


def test_sharded_merges_store_each_id_once_and_a_rerun_adds_nothing(
    local_stack, bq_client: bigquery.Client
) -> None:
    dataset = f"shards_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    SchemaManager(bq_client, bq_client.project).ensure(dataset, "t", SCHEMA)
    rows = _rows(dataset, range(40), copies=2)
    assert len({shard_of(r.row, SHARDS) for r in rows}) == SHARDS  # every shard has rows

    _run(warehouse, rows, dataset)
    _run(warehouse, _rows(dataset, range(30, 50), copies=1), dataset)  # 10 old ids, 10 new

    stored = list(bq_client.query(f"SELECT id, n FROM `{bq_client.project}.{dataset}.t`").result())
    assert sorted(r["id"] for r in stored) == sorted(f"e{i}" for i in range(50))
    assert all(r["n"] == int(r["id"][1:]) for r in stored)
