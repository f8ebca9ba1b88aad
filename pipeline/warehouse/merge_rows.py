"""Idempotent writes: rows are staged, then MERGEd in only when their id is new.

A rerun of the same input (a backfill run twice) therefore adds nothing; rows
repeated inside one input are inserted once. Used by ``--write_mode
insert_missing_by_id``. The staging table is dropped whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.cloud import bigquery

from pipeline.warehouse import identifiers
from pipeline.warehouse.staging import merge_through_staging

STAGING_PREFIX = "_opentrack_merge_staging_"


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
    return merge_through_staging(
        client,
        project,
        dataset,
        STAGING_PREFIX,
        rows,
        schema,
        lambda staging, columns: insert_missing_sql(project, dataset, table, staging, columns),
        "bigquery_merge_write_calls",
        required=("id", "loaded_at"),
    )
