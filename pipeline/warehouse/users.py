"""The ``users`` table: one row per user id with the latest value of every trait.

Maintained by MERGE from a staging table, never by streaming inserts into
``users`` (DML cannot touch streamed rows for ~30 minutes). For each column,
a newer row (by event ``timestamp``, then ``received_at``) wins when it has a
value; an older row (a backfill) only fills columns the user does not have yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.cloud import bigquery

from pipeline.warehouse import identifiers
from pipeline.warehouse.staging import merge_through_staging

STAGING_PREFIX = "_opentrack_users_staging_"
_META = ("id", "received_at", "timestamp")


def _order(row: Mapping[str, Any]) -> tuple[str, str]:
    # Canonical timestamps compare correctly as text.
    return row.get("timestamp") or "", row.get("received_at") or ""


def latest_traits(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two users rows of one user folded into one; the newer wins column by column."""
    older, newer = (second, first) if _order(first) > _order(second) else (first, second)
    return {**older, **newer}


def merge_sql(project: str, dataset: str, staging: str, columns: Iterable[str]) -> str:
    """MERGE of the staging rows into ``users`` (identifiers validated and quoted)."""
    target = identifiers.quoted_table(project, dataset, "users")
    source = identifiers.quoted_table(project, dataset, staging)
    names = [identifiers.quoted_column(c) for c in columns]
    newer = (
        "(T.`timestamp` IS NULL OR S.`timestamp` > T.`timestamp` OR "
        "(S.`timestamp` = T.`timestamp` AND S.`received_at` >= T.`received_at`))"
    )
    updates = []
    for name in names:
        if name == "`id`":
            continue
        if name in ("`received_at`", "`timestamp`"):
            updates.append(f"{name} = GREATEST(COALESCE(T.{name}, S.{name}), S.{name})")
        else:
            updates.append(
                f"{name} = IF({newer}, COALESCE(S.{name}, T.{name}), COALESCE(T.{name}, S.{name}))"
            )
    return (
        f"MERGE {target} T USING {source} S ON T.`id` = S.`id` "
        f"WHEN MATCHED THEN UPDATE SET {', '.join(updates)} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
        f"VALUES ({', '.join('S.' + n for n in names)})"
    )


def merge_users(
    client: bigquery.Client,
    project: str,
    dataset: str,
    rows: list[dict[str, Any]],
    schema: Mapping[str, str],
) -> int:
    """Upsert ``rows`` (one per user id) into ``dataset.users``; returns rows merged."""
    return merge_through_staging(
        client,
        project,
        dataset,
        STAGING_PREFIX,
        rows,
        schema,
        lambda staging, columns: merge_sql(project, dataset, staging, columns),
        "bigquery_users_merge_calls",
        required=_META,
    )
