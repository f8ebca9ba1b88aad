"""Idempotent writes: rows are staged, then MERGEd in only when their id is new.

A rerun of the same input (a backfill run twice) therefore adds nothing; rows
repeated inside one input are inserted once. Used by ``--write_mode
insert_missing_by_id``. The staging table is dropped whatever happens.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable, Mapping

from apache_beam.metrics import Metrics
from google.cloud import bigquery

from pipeline.warehouse import identifiers
from pipeline.warehouse.client import RETRY
from pipeline.warehouse.schema import to_api

STAGING_PREFIX = "_opentrack_merge_staging_"
INSERT_CHUNK = 500


def insert_missing_sql(
    project: str, dataset: str, table: str, staging: str, columns: Iterable[str]
) -> str:
    """MERGE inserting the staged rows whose ``id`` the table does not hold (one per id)."""
    target = identifiers.quoted_table(project, dataset, table)
    source = identifiers.quoted_table(project, dataset, staging)
    names = [identifiers.quoted_column(c) for c in columns]
    one_per_id = (
        f"SELECT * EXCEPT(_opentrack_rank) FROM (SELECT *, ROW_NUMBER() OVER "
        f"(PARTITION BY `id` ORDER BY `loaded_at`) AS _opentrack_rank FROM {source}) "
        f"WHERE _opentrack_rank = 1"
    )
    return (
        f"MERGE {target} T USING ({one_per_id}) S ON T.`id` = S.`id` "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
        f"VALUES ({', '.join('S.' + n for n in names)})"
    )


def insert_missing(
    client: bigquery.Client,
    project: str,
    dataset: str,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    schema: Mapping[str, str],
) -> int:
    """Stage ``rows`` and MERGE in those with a new id; returns rows staged."""
    batch = [dict(row) for row in rows]
    if not batch:
        return 0
    columns = sorted({c for row in batch for c in row} | {"id", "loaded_at"})
    staging = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    ref = f"{identifiers.project_id(project)}.{identifiers.dataset_id(dataset)}.{staging}"
    calls = Metrics.counter("opentrack", "bigquery_merge_write_calls")
    client.create_table(bigquery.Table(ref, schema=to_api({c: schema[c] for c in columns})), retry=RETRY)
    try:
        for start in range(0, len(batch), INSERT_CHUNK):
            calls.inc()
            errors = client.insert_rows_json(ref, batch[start : start + INSERT_CHUNK], retry=RETRY)
            if errors:
                raise RuntimeError(f"staging rows into {ref} failed: {errors[:3]}")
        client.query(insert_missing_sql(project, dataset, table, staging, columns), retry=RETRY).result()
    finally:
        client.delete_table(ref, not_found_ok=True, retry=RETRY)
        calls.inc(3)  # create, MERGE, delete
    return len(batch)
