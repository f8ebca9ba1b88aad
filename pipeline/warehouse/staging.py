"""Stage rows in a temporary table, run one MERGE from it, drop it whatever happens.

The one way this product changes existing rows (``users``) or writes
idempotently (``--write_mode insert_missing_by_id``). The rows reach the
staging table by one load job (free, and no streaming buffer), then one MERGE
moves them into the target. The rows are spooled to a local file on the way, never
held as a list, so a shard of any size stages in bounded memory.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from apache_beam.metrics import Metrics
from google.cloud import bigquery

from pipeline.warehouse import identifiers, loads
from pipeline.warehouse.client import RETRY
from pipeline.warehouse.schema import to_api


def merge_through_staging(
    client: bigquery.Client,
    project: str,
    dataset: str,
    prefix: str,
    rows: Iterable[Mapping[str, Any]],
    schema: Mapping[str, str],
    merge_sql: Callable[[str, list[str]], str],
    counter: str,
    required: Iterable[str] = (),
) -> int:
    """Stage ``rows`` (typed by ``schema``) and run ``merge_sql(staging, columns)``;
    the staging table has every column of the rows plus ``required`` (which the
    MERGE names). Returns the rows staged; API calls go to the Beam counter ``counter``."""
    path, count, size, seen = _spooled(rows)
    try:
        if not count:
            return 0
        _stage_and_merge(
            client, project, dataset, prefix, path, size, sorted(seen | set(required)), schema,
            merge_sql, counter,
        )  # fmt: skip
    finally:
        os.remove(path)
    return count


def _spooled(rows: Iterable[Mapping[str, Any]]) -> tuple[str, int, int, set[str]]:
    """The rows as JSON lines in a temporary file: (path, rows, bytes, columns seen)."""
    seen: set[str] = set()
    count = size = 0
    with tempfile.NamedTemporaryFile("wb", prefix="opentrack-staging-", delete=False) as out:
        for row in rows:
            seen.update(row)
            line = orjson.dumps(dict(row)) + b"\n"
            out.write(line)
            count += 1
            size += len(line)
    return out.name, count, size, seen


def _stage_and_merge(
    client: bigquery.Client,
    project: str,
    dataset: str,
    prefix: str,
    path: str,
    size: int,
    columns: list[str],
    schema: Mapping[str, str],
    merge_sql: Callable[[str, list[str]], str],
    counter: str,
) -> None:
    staging = f"{prefix}{uuid.uuid4().hex[:12]}"
    ref = f"{identifiers.project_id(project)}.{identifiers.dataset_id(dataset)}.{staging}"
    calls = Metrics.counter("opentrack", counter)
    # exists_ok: the name is ours alone, so a table already there is this very create,
    # retried after its answer was lost.
    table = client.create_table(
        bigquery.Table(ref, schema=to_api({c: schema[c] for c in columns})),
        exists_ok=True,
        retry=RETRY,
    )
    try:
        target = table.reference
        upload = loads.submit_file(client, target, lambda: open(path, "rb"), size)
        outcome = loads.run_load(client, staging, target, upload)
        calls.inc(len(outcome.job_ids))
        if outcome.refused:
            raise RuntimeError(f"staging rows into {ref} failed: {outcome.errors[:3]}")
        client.query(merge_sql(staging, columns), retry=RETRY).result()
    finally:
        client.delete_table(ref, not_found_ok=True, retry=RETRY)
        calls.inc(3)  # create, MERGE, delete
