"""Batch writes through BigQuery load jobs (``--write_method=FILE_LOADS``).

Rows are written, per destination table and shard, as newline-delimited JSON files
under a directory of this run in the temp location (``gs://`` or local), each with a
sidecar of the events the rows came from (line for line: a refused row's dead letter
holds its event, so replay can re-feed it), then each
table is loaded by one job from all its files (``pipeline.warehouse.loads``: why not
Beam's FILE_LOADS, deterministic job ids, retries); a bundle's tables load side by
side. A table's files are deleted once the bundle's loads are done, whatever their
outcome. BigQuery's rules are enforced here, not left
to the server (the emulator drops unknown keys silently): a row naming a column the
table lacks is refused before the load. A load BigQuery refuses is retried row by row
for that table only, and only the rows it names become dead letters, with its error.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.pvalue import AsDict, PCollection, TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue
from google.cloud import bigquery

from pipeline.warehouse import loads
from pipeline.warehouse.client import NotFound
from pipeline.warehouse.config import WarehouseConfig
from transforms.beam.bundle_threads import map_in_bundle
from transforms.beam.event_model import METRICS_NAMESPACE
from transforms.beam.sharding import shard_of, shards_for
from transforms.model.deadletter import DeadLetter, EventRejected, Reason, Stage, make_dead_letter

REFUSED = "refused"
FILES = "files"
RUN_DIRECTORY_PREFIX = "opentrack-loads-"
# Load jobs of one bundle in flight at once: each is a wait on BigQuery (measured on the
# emulator, 18 loads: 3.1 s one by one, 1.6 s two at a time, 1.5 s four at a time).
LOAD_CONCURRENCY = 4
Item = TypeVar("Item")


class LoadFile(NamedTuple):
    path: str
    rows: int


def run_directory(temp_location: str | None, run_id: str) -> str:
    """Where one run's load files go: under ``temp_location``, else the machine's temp dir."""
    root = temp_location or tempfile.gettempdir()
    return FileSystems.join(root, f"{RUN_DIRECTORY_PREFIX}{run_id}")


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


def _rows_of(paths: Iterable[str]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The rows of load files with their events (from the sidecars), in file order."""
    for path in paths:
        with (
            FileSystems.open(path, mime_type="application/json") as handle,
            FileSystems.open(events_path(path), mime_type="application/json") as events,
        ):
            for line, event in zip(handle, events, strict=True):
                yield orjson.loads(line), orjson.loads(event)


def _chunked(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last shorter), read lazily."""
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Loaded(NamedTuple):
    dataset: str
    table: str
    paths: list[str]
    outcome: loads.LoadOutcome


class LoadTablesFn(_Client):
    """((dataset, table), LoadFiles) -> one load job; the rows BigQuery refuses -> dead
    letters. Deletes the table's files (and the run's local directory once empty).

    A bundle's tables are loaded side by side (``LOAD_CONCURRENCY`` jobs at a time, each
    a wait on BigQuery), at the bundle's end; their files are deleted only once every
    load of the bundle is done, so a retried bundle finds each file it names (its jobs
    already run are found again by their ids, never run twice)."""

    def __init__(self, config: WarehouseConfig, directory: str, run_id: str) -> None:
        super().__init__(config)
        self._directory = directory
        self._run_id = run_id
        self._pending: list[tuple[str, str, list[str]]] = []
        self._jobs = Metrics.counter(METRICS_NAMESPACE, "bigquery_load_jobs")
        self._tables_loaded = Metrics.counter(METRICS_NAMESPACE, "load_tables")
        self._loaded = Metrics.counter(METRICS_NAMESPACE, "load_rows_loaded")
        self._row_level = Metrics.counter(METRICS_NAMESPACE, "load_refused_rows_retried")

    def start_bundle(self) -> None:
        self._pending = []

    def process(self, element: tuple[tuple[str, str], Iterable[LoadFile]]) -> None:
        (dataset, table_name), files = element
        self._pending.append((dataset, table_name, sorted({file.path for file in files})))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        pending, self._pending = self._pending, []
        if not pending:
            return
        done = map_in_bundle(lambda table: self._load(*table), pending, LOAD_CONCURRENCY)
        for loaded in done:
            self._jobs.inc(len(loaded.outcome.job_ids))
            self._tables_loaded.inc()
            self._loaded.inc(loaded.outcome.output_rows)
            if loaded.outcome.refused:
                for dead_letter in self._row_by_row(loaded):
                    yield GlobalWindows.windowed_value(dead_letter)
        for loaded in done:
            FileSystems.delete([*loaded.paths, *(events_path(path) for path in loaded.paths)])
        if not done[0].paths[0].startswith("gs://"):
            try:
                os.rmdir(self._directory)  # the last table of the run removes it
            except OSError:
                pass

    def _load(self, dataset: str, table_name: str, paths: list[str]) -> _Loaded:
        table = self.reference(dataset, table_name)
        outcome = loads.load_files(self._client, self._run_id, table, paths, self._directory)
        return _Loaded(dataset, table_name, paths, outcome)

    def _row_by_row(self, loaded: _Loaded) -> Iterator[DeadLetter]:
        """The rows of a load BigQuery refused, inserted row by row: the refused ones' dead
        letters, with the load's error."""
        table = self.reference(loaded.dataset, loaded.table)
        outcome = loaded.outcome
        why = f"load job {outcome.job_ids[-1]} refused: {outcome.errors[0]}"
        for chunk in _chunked(_rows_of(loaded.paths), loads.INSERT_CHUNK):
            self._row_level.inc(len(chunk))
            rows = [row for row, _ in chunk]
            for index, error in loads.insert_reporting(self._client, table, rows).items():
                row, event = chunk[index]
                yield refused_dead_letter(
                    loaded.dataset, loaded.table, row, f"{error} ({why})", event
                )


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
        shards = shards_for(pipeline)
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
