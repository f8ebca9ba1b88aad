"""Batch writes through BigQuery load jobs (``--write_method=FILE_LOADS``).

Rows are written, per destination table and shard, as newline-delimited JSON files
under a directory of this run in the temp location (``gs://`` or local), each with a
sidecar of the events the rows came from (line for line: a refused row's dead letter
holds its event, so replay can re-feed it), then each
table is loaded by one job from all its files (``pipeline.warehouse.loads``: why not
Beam's FILE_LOADS, deterministic job ids, retries). A table's files are deleted once
its load is done, whatever its outcome. BigQuery's rules are enforced here, not left
to the server (the emulator drops unknown keys silently): a row naming a column the
table lacks is refused before the load. A load BigQuery refuses is retried row by row
for that table only, and only the rows it names become dead letters, with its error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zlib
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.pvalue import AsDict, PCollection, TaggedOutput
from google.cloud import bigquery

from pipeline.warehouse import loads
from pipeline.warehouse.client import NotFound
from pipeline.warehouse.config import WarehouseConfig
from transforms.deadletter import DeadLetter, EventRejected, Reason, Stage, make_dead_letter
from transforms.event_model import METRICS_NAMESPACE

REFUSED = "refused"
FILES = "files"
# Files per table on Dataflow, so one table's rows are written by several workers; the
# local runner has one worker, so one file.
DATAFLOW_SHARDS = 16
RUN_DIRECTORY_PREFIX = "opentrack-loads-"


class LoadFile(NamedTuple):
    path: str
    rows: int


def run_directory(temp_location: str | None, run_id: str) -> str:
    """Where one run's load files go: under ``temp_location``, else the machine's temp dir."""
    root = temp_location or tempfile.gettempdir()
    return FileSystems.join(root, f"{RUN_DIRECTORY_PREFIX}{run_id}")


def shard_of(row: dict[str, Any], shards: int) -> int:
    """A stable shard for a row (by its id), so a retried bundle writes the same files."""
    if shards == 1:
        return 0
    return zlib.crc32(str(row.get("id")).encode()) % shards


def events_path(path: str) -> str:
    """The sidecar of a load file: the event of each of its rows, as JSON text, line for line."""
    return f"{path}.events"


def event_line(event: bytes | dict[str, Any] | None) -> bytes:
    """One sidecar line: the event as a JSON string (null for a row that is no event's)."""
    text: str | None
    if isinstance(event, bytes):
        text = event.decode("utf-8", "backslashreplace")
    elif isinstance(event, dict):
        text = orjson.dumps(event).decode()
    else:
        text = event
    return orjson.dumps(text) + b"\n"


def refused_dead_letter(
    dataset: str, table: str, row: dict[str, Any], error: str, event: Any = None
) -> DeadLetter:
    """A row BigQuery refused in a load, as a dead letter with BigQuery's error, holding the
    event the row came from (the row itself when it is no event's)."""
    return make_dead_letter(
        Stage.WRITE,
        EventRejected(Reason.LOAD_REJECTED, f"{dataset}.{table}: {error}"),
        event if event is not None else orjson.dumps(row),
        source=dataset,
        received_at=row.get("received_at"),
        message_id=row.get("id"),
    )


class _Client(beam.DoFn):
    """A DoFn with a BigQuery client, built on the worker."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._client: Any = None

    def setup(self) -> None:
        self._client = self._config.client()

    def reference(self, dataset: str, table: str) -> bigquery.TableReference:
        return bigquery.TableReference.from_string(f"{self._config.project}.{dataset}.{table}")


class WriteLoadFilesFn(_Client):
    """((dataset, table, shard), rows) -> ((dataset, table), LoadFile); rows with a column
    the table lacks -> ``REFUSED`` dead letters (or, with --ignore_unknown_values, the
    row without those values, counted). The table's columns come from the schema step's
    final schemas (automatic mode), else from the live table (one get per table)."""

    def __init__(self, config: WarehouseConfig, directory: str) -> None:
        super().__init__(config)
        self._directory = directory
        self._live: dict[tuple[str, str], frozenset[str] | None] = {}
        self._dropped = Metrics.counter(METRICS_NAMESPACE, "load_unknown_values_dropped")

    def columns(
        self, dataset: str, table: str, schemas: Mapping[Any, Any]
    ) -> frozenset[str] | None:
        """The table's column names, or None when it does not exist (manual mode)."""
        known = schemas.get((dataset, table))
        if known is not None:
            return frozenset(known[0])
        if (dataset, table) not in self._live:
            try:
                live = self._client.get_table(self.reference(dataset, table), retry=loads.RETRY)
                self._live[(dataset, table)] = frozenset(field.name for field in live.schema)
            except NotFound:
                self._live[(dataset, table)] = None
        return self._live[(dataset, table)]

    def process(
        self,
        element: tuple[tuple[str, str, int], Iterable[tuple[dict[str, Any], Any]]],
        schemas: Mapping[Any, Any],
    ) -> Iterator[Any]:
        (dataset, table, shard), rows = element
        columns = self.columns(dataset, table, schemas)
        if columns is None:  # what BigQuery answers, for each row
            missing = f"Not found: Table {self._config.project}:{dataset}.{table}"
            for row, event in rows:
                dead = refused_dead_letter(dataset, table, row, missing, event)
                yield TaggedOutput(REFUSED, dead)
            return
        path = FileSystems.join(self._directory, f"{dataset}.{table}.{shard:05d}.jsonl")
        written = 0
        with (
            FileSystems.create(path, mime_type="application/json") as handle,
            FileSystems.create(events_path(path), mime_type="application/json") as events,
        ):
            for row, event in rows:
                unknown = [name for name in row if name not in columns]
                if unknown and not self._config.ignore_unknown_values:
                    error = f"no such field: {', '.join(unknown[:5])} (the table lacks it)"
                    dead = refused_dead_letter(dataset, table, row, error, event)
                    yield TaggedOutput(REFUSED, dead)
                    continue
                if unknown:
                    self._dropped.inc(len(unknown))
                    row = {name: value for name, value in row.items() if name in columns}
                handle.write(orjson.dumps(row) + b"\n")
                events.write(event_line(event))
                written += 1
        if written:
            yield (dataset, table), LoadFile(path, written)
        else:
            FileSystems.delete([path, events_path(path)])


def _concatenated(paths: list[str], directory: str) -> str:
    """One local file holding ``paths`` one after the other (a local load uploads one file)."""
    if len(paths) == 1:
        return paths[0]
    combined = os.path.join(directory, f"combined-{uuid.uuid4().hex[:8]}.jsonl")
    with open(combined, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out)
    return combined


def _rows_of(paths: Iterable[str]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The rows of load files with their events (from the sidecars), in file order."""
    for path in paths:
        with (
            FileSystems.open(path, mime_type="application/json") as handle,
            FileSystems.open(events_path(path), mime_type="application/json") as events,
        ):
            for line, event in zip(handle, events):
                yield orjson.loads(line), orjson.loads(event)


class LoadTablesFn(_Client):
    """((dataset, table), LoadFiles) -> one load job; the rows BigQuery refuses -> dead
    letters. Deletes the table's files (and the run's local directory once empty)."""

    def __init__(self, config: WarehouseConfig, directory: str, run_id: str) -> None:
        super().__init__(config)
        self._directory = directory
        self._run_id = run_id
        self._jobs = Metrics.counter(METRICS_NAMESPACE, "bigquery_load_jobs")
        self._tables_loaded = Metrics.counter(METRICS_NAMESPACE, "load_tables")
        self._loaded = Metrics.counter(METRICS_NAMESPACE, "load_rows_loaded")
        self._row_level = Metrics.counter(METRICS_NAMESPACE, "load_refused_rows_retried")

    def process(self, element: tuple[tuple[str, str], Iterable[LoadFile]]) -> Iterator[DeadLetter]:
        (dataset, table_name), files = element
        paths = sorted({file.path for file in files})
        table = self.reference(dataset, table_name)
        local = not paths[0].startswith("gs://")
        source = _concatenated(paths, self._directory) if local else None
        try:
            if source is not None:
                submit = loads.submit_file(
                    self._client, table, lambda: _open_binary(source), os.path.getsize(source)
                )
            else:
                submit = loads.submit_uris(self._client, table, paths)
            outcome = loads.run_load(self._client, self._run_id, table, submit)
            self._jobs.inc(len(outcome.job_ids))
            self._tables_loaded.inc()
            self._loaded.inc(outcome.output_rows)
            if outcome.refused:
                yield from self._row_by_row(dataset, table_name, table, paths, outcome)
        finally:
            if source is not None and source not in paths:
                os.remove(source)
        FileSystems.delete([*paths, *(events_path(path) for path in paths)])
        if local:
            try:
                os.rmdir(self._directory)  # the last table of the run removes it
            except OSError:
                pass

    def _row_by_row(
        self, dataset: str, table_name: str, table: Any, paths: list[str], outcome: Any
    ) -> Iterator[DeadLetter]:
        load_error = f"load job {outcome.job_ids[-1]} refused: {outcome.errors[0]}"
        chunk: list[tuple[dict[str, Any], str | None]] = []
        for row_and_event in _rows_of(paths):
            chunk.append(row_and_event)
            if len(chunk) == loads.INSERT_CHUNK:
                yield from self._insert(dataset, table_name, table, chunk, load_error)
                chunk = []
        if chunk:
            yield from self._insert(dataset, table_name, table, chunk, load_error)

    def _insert(
        self,
        dataset: str,
        table_name: str,
        table: Any,
        chunk: list[tuple[dict[str, Any], str | None]],
        why: str,
    ) -> Iterator[DeadLetter]:
        self._row_level.inc(len(chunk))
        rows = [row for row, _ in chunk]
        for index, error in loads.insert_reporting(self._client, table, rows).items():
            row, event = chunk[index]
            yield refused_dead_letter(dataset, table_name, row, f"{error} ({why})", event)


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


class LoadRows(beam.PTransform):
    """TableRows -> files -> one load job per table; returns the refused rows' dead letters.

    ``schemas`` are the schema step's final schemas ((dataset, table) -> (schema, ...)),
    empty in manual mode."""

    def __init__(self, config: WarehouseConfig, schemas: PCollection) -> None:
        super().__init__()
        self._config = config
        self._schemas = schemas

    def expand(self, rows: PCollection) -> PCollection:
        pipeline = rows.pipeline
        run_id = uuid.uuid4().hex[:12]  # fixed with the graph: the same in every bundle retry
        temp_location = pipeline.options.view_as(GoogleCloudOptions).temp_location
        directory = run_directory(temp_location, run_id)
        shards = DATAFLOW_SHARDS if type(pipeline.runner).__name__ == "DataflowRunner" else 1
        written = (
            rows
            | "KeyByTableShard"
            >> beam.Map(lambda r: ((r.dataset, r.table, shard_of(r.row, shards)), (r.row, r.event)))
            | "RowsPerTableShard" >> beam.GroupByKey()
            | "WriteLoadFiles"
            >> beam.ParDo(
                WriteLoadFilesFn(self._config, directory), AsDict(self._schemas)
            ).with_outputs(REFUSED, main=FILES)
        )
        refused_at_load = (
            written[FILES]
            | "FilesPerTable" >> beam.GroupByKey()
            | "LoadTables" >> beam.ParDo(LoadTablesFn(self._config, directory, run_id))
        )
        return (written[REFUSED], refused_at_load) | "RefusedRows" >> beam.Flatten()
