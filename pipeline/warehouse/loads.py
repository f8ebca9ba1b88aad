"""Load jobs: one ``WRITE_APPEND`` load per destination table, under a deterministic job id.

Why not Beam's ``WriteToBigQuery(method=FILE_LOADS)``: with dynamic destinations it
loads each destination into a temporary table and copies it over (copies are more
jobs, and a failed run leaves its temporary tables behind), a load job that fails
fails the whole run with no way to tell the refused rows from the others, and it
cannot load from a local temp directory. Here every table gets one load straight
into the existing (partitioned, clustered) table. The job names no schema: BigQuery
then reads the rows with the destination's own (modes and descriptions included),
which the schema step has just made fit; the caller checks the rows' columns against
it first. A load BigQuery refuses is retried row by row (``insert_reporting``) so
only the offending rows become dead letters.

Job ids are deterministic (``load_job_id``): a retried bundle, or a request whose
answer was lost, finds the job it already started instead of loading twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from google.api_core import exceptions
from google.cloud import bigquery

from pipeline.warehouse.client import RETRY

# A finished job whose error says BigQuery failed, not the data: started again under
# the next attempt's id (a failed load job writes nothing, so this cannot double).
TRANSIENT_REASONS = frozenset(
    {"backendError", "internalError", "rateLimitExceeded", "jobBackendError", "jobInternalError"}
)
MAX_ATTEMPTS = 5
BACKOFF_S = 1.0
JOB_TIMEOUT_S = 1800.0
INSERT_CHUNK = 500  # rows per insertAll request of the row-level retry
_LOG = logging.getLogger(__name__)


class LoadFailed(RuntimeError):
    """A load that kept failing for BigQuery's own reasons: the bundle fails (and retries)."""


@dataclass(frozen=True)
class LoadOutcome:
    """What one table's load did: the jobs run, rows loaded, and BigQuery's errors if it
    refused the data (then nothing was loaded)."""

    job_ids: tuple[str, ...]
    output_rows: int
    errors: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.errors)


def load_job_id(run_id: str, dataset: str, table: str, attempt: int) -> str:
    """The job id of one table's load in one run: the same for every retry of it."""
    digest = hashlib.sha256(f"{dataset}\0{table}".encode()).hexdigest()[:16]
    return f"opentrack_load_{run_id}_{digest}_{attempt}"


def job_config() -> bigquery.LoadJobConfig:
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        ignore_unknown_values=False,
    )


def error_texts(job: bigquery.LoadJob) -> tuple[str, ...]:
    """BigQuery's errors of a failed job as ``reason: message`` lines, the main one first."""
    errors = [job.error_result or {}] + list(job.errors or [])
    texts: list[str] = []
    for error in errors:
        text = f"{error.get('reason', '')}: {error.get('message', '')}".strip(": ")
        if text and text not in texts:
            texts.append(text)
    return tuple(texts) or ("load job failed without an error",)


def _existing_job(client: bigquery.Client, job_id: str) -> bigquery.LoadJob | None:
    try:
        job = client.get_job(job_id, retry=RETRY)
    except exceptions.NotFound:
        return None
    return job  # type: ignore[return-value]


def _started(
    client: bigquery.Client, job_id: str, submit: Callable[[str], bigquery.LoadJob]
) -> bigquery.LoadJob:
    """The job ``job_id``: found when an earlier try started it, else submitted now. A
    submission whose answer was lost is found again by its id; one that never reached
    BigQuery is sent again under the same id (so it can never run twice)."""
    last: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        existing = _existing_job(client, job_id)
        if existing is not None:
            return existing
        try:
            return submit(job_id)
        except exceptions.BadRequest:
            raise
        except (exceptions.GoogleAPICallError, OSError) as failure:  # requests' errors too
            _LOG.warning("submitting load job %s failed (%s); checking for it", job_id, failure)
            last = failure
        time.sleep(BACKOFF_S * 2**attempt * (0.5 + random.random()))
    raise LoadFailed(f"load job {job_id} could not be started: {last}")


def _finished(job: bigquery.LoadJob) -> bigquery.LoadJob:
    try:
        job.result(retry=RETRY, timeout=JOB_TIMEOUT_S)
    except exceptions.GoogleAPICallError:
        pass  # the job's own error_result says what happened
    return job


def run_load(
    client: bigquery.Client,
    run_id: str,
    table: bigquery.TableReference,
    submit: Callable[[str, bigquery.LoadJobConfig], bigquery.LoadJob],
) -> LoadOutcome:
    """Run one table's load to its end: retried under a new id while BigQuery fails for its
    own reasons, reported (``LoadOutcome.errors``) when it refuses the data."""
    config = job_config()
    job_ids: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        job_id = load_job_id(run_id, table.dataset_id, table.table_id, attempt)
        job_ids.append(job_id)
        job = _finished(_started(client, job_id, lambda jid: submit(jid, config)))
        if job.error_result is None:
            return LoadOutcome(tuple(job_ids), int(job.output_rows or 0))
        if job.error_result.get("reason") not in TRANSIENT_REASONS:
            return LoadOutcome(tuple(job_ids), 0, error_texts(job))
        _LOG.warning("load job %s failed (%s); starting it again", job_id, job.error_result)
        time.sleep(BACKOFF_S * 2**attempt * (0.5 + random.random()))
    raise LoadFailed(f"load into {table} failed {MAX_ATTEMPTS} times: {job_ids}")


def submit_uris(
    client: bigquery.Client, table: bigquery.TableReference, uris: Sequence[str]
) -> Callable[[str, bigquery.LoadJobConfig], bigquery.LoadJob]:
    """Submit a load of ``gs://`` files."""
    return lambda job_id, config: client.load_table_from_uri(
        list(uris), table, job_id=job_id, job_config=config, retry=RETRY
    )


def submit_file(
    client: bigquery.Client,
    table: bigquery.TableReference,
    open_file: Callable[[], BinaryIO],
    size: int,
) -> Callable[[str, bigquery.LoadJobConfig], bigquery.LoadJob]:
    """Submit a load of a local file of ``size`` bytes, uploaded with the request (one
    request with the job under 5 MiB, a resumable upload above)."""

    def submit(job_id: str, config: bigquery.LoadJobConfig) -> bigquery.LoadJob:
        with open_file() as handle:
            return client.load_table_from_file(
                handle, table, job_id=job_id, job_config=config, size=size
            )

    return submit


def load_files(
    client: bigquery.Client,
    run_id: str,
    table: bigquery.TableReference,
    paths: Sequence[str],
    scratch: str,
) -> LoadOutcome:
    """One load of ``paths`` into ``table``: ``gs://`` files by their URIs, local files
    joined in ``scratch`` into the one file a local load uploads."""
    if paths[0].startswith("gs://"):
        return run_load(client, run_id, table, submit_uris(client, table, paths))
    source = _concatenated(paths, scratch)
    try:
        submit = submit_file(client, table, lambda: open(source, "rb"), os.path.getsize(source))
        return run_load(client, run_id, table, submit)
    finally:
        if source not in paths:
            os.remove(source)


def _concatenated(paths: Sequence[str], directory: str) -> str:
    """One local file holding ``paths`` one after the other."""
    if len(paths) == 1:
        return paths[0]
    combined = os.path.join(directory, f"combined-{uuid.uuid4().hex[:8]}.jsonl")
    with open(combined, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out)
    return combined


def insert_reporting(
    client: bigquery.Client, table: bigquery.TableReference, rows: Sequence[dict[str, Any]]
) -> dict[int, str]:
    """Insert ``rows`` row by row (insertAll, invalid rows skipped); returns BigQuery's
    error for each refused row by its index. For a load BigQuery refused as a whole: the
    valid rows land, the refused ones are named (a refused load wrote nothing)."""
    refused: dict[int, str] = {}
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = list(rows[start : start + INSERT_CHUNK])
        ids = [row.get("id") for row in chunk]
        errors = client.insert_rows_json(
            table, chunk, row_ids=ids, skip_invalid_rows=True, retry=RETRY
        )
        for error in errors:
            texts = [
                f"{e.get('reason', '')}: {e.get('message', '')}".strip(": ")
                + (f" ({e['location']})" if e.get("location") else "")
                for e in error.get("errors", [])
            ]
            refused[start + int(error["index"])] = "; ".join(texts) or "refused"
    return refused
