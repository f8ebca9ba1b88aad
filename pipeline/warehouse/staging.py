"""Stage rows in a temporary table, run one MERGE from it, drop it whatever happens.

The one way this product changes existing rows (``users``) or writes
idempotently (``--write_mode insert_missing_by_id``). The rows reach the
staging table by one load job (free, and no streaming buffer), then one MERGE
moves them into the target.
"""

from __future__ import annotations

import io
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

from apache_beam.metrics import Metrics
from google.cloud import bigquery

import orjson

from pipeline.warehouse import identifiers, loads
from pipeline.warehouse.client import RETRY
from pipeline.warehouse.schema import to_api


def merge_through_staging(
    client: bigquery.Client,
    project: str,
    dataset: str,
    prefix: str,
    rows: Sequence[Mapping[str, Any]],
    schema: Mapping[str, str],
    merge_sql: Callable[[str, list[str]], str],
    counter: str,
    required: Iterable[str] = (),
) -> int:
    """Stage ``rows`` (typed by ``schema``) and run ``merge_sql(staging, columns)``;
    the staging table has every column of the rows plus ``required`` (which the
    MERGE names). Returns the rows staged; API calls go to the Beam counter ``counter``."""
    if not rows:
        return 0
    columns = sorted({c for row in rows for c in row} | set(required))
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
        data = b"".join(orjson.dumps(dict(row)) + b"\n" for row in rows)
        target = table.reference
        upload = loads.submit_file(client, target, lambda: io.BytesIO(data), len(data))
        outcome = loads.run_load(client, staging, target, upload)
        calls.inc(len(outcome.job_ids))
        if outcome.refused:
            raise RuntimeError(f"staging rows into {ref} failed: {outcome.errors[:3]}")
        client.query(merge_sql(staging, columns), retry=RETRY).result()
    finally:
        client.delete_table(ref, not_found_ok=True, retry=RETRY)
        calls.inc(3)  # create, MERGE, delete
    return len(rows)
