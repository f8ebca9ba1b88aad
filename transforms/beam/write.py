"""Writing rows: Beam's WriteToBigQuery with per-row destinations, and users MERGE.

``WriteRows`` hands each row to ``WriteToBigQuery`` as a ``DestinedRow`` (a
plain dict that also knows its table: Beam's destination callable reads the
table, BigQuery receives only the columns), with ``CREATE_NEVER`` because the
schema step owns creation. Rows BigQuery refuses for good come back as dead
letters carrying BigQuery's own error; transient failures are retried by
Beam (``RETRY_ON_TRANSIENT_ERROR``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, PCollection
from google.cloud import bigquery

from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.merge_rows import insert_missing
from pipeline.warehouse.schema import from_api
from pipeline.warehouse.users import latest_traits, merge_users
from transforms.beam.endpoint_client import EndpointBigQueryClient
from transforms.beam.event_model import METRICS_NAMESPACE, Clock
from transforms.beam.local_runner import on_local_streaming_runner
from transforms.beam.sharding import shard_of, shards_for
from transforms.beam.storage_write import StorageWriteRows
from transforms.model.deadletter import (
    DEAD_LETTER_SCHEMA,
    DeadLetter,
    EventRejected,
    Reason,
    Stage,
    dead_letter_dataset,
    dead_letter_row,
    make_dead_letter,
)
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.normalize import TableRow
from transforms.model.timestamps import format_timestamp

_LOG = logging.getLogger(__name__)


class DestinedRow(dict):
    """A row (the dict BigQuery receives) with its ``project:dataset.table`` and the event
    it came from (for the dead letter if BigQuery refuses it; never sent)."""

    __slots__ = ("table_spec", "event")

    def __init__(
        self, row: dict[str, Any], table_spec: str, event: bytes | dict[str, Any] | None = None
    ) -> None:
        super().__init__(row)
        self.table_spec = table_spec
        self.event = event

    def __reduce__(self) -> tuple[Any, ...]:
        return DestinedRow, (dict(self), self.table_spec, self.event)


def to_destined(row: TableRow, project: str) -> DestinedRow:
    return DestinedRow(row.row, f"{project}:{row.dataset}.{row.table}", row.event)


def destination_of(row: DestinedRow) -> str:
    return row.table_spec


def _dataset_and_table(destination: Any) -> tuple[str, str]:
    if hasattr(destination, "datasetId"):
        return destination.datasetId, destination.tableId
    spec = str(destination).split(":")[-1]
    dataset, _, table = spec.partition(".")
    return dataset, table


def rejected_row_dead_letter(failure: tuple[Any, dict[str, Any], list[Any]]) -> DeadLetter:
    """A row BigQuery refused, as a dead letter with BigQuery's own error, holding the
    event the row came from (the row itself when it is not an event's)."""
    destination, row, errors = failure
    event = getattr(row, "event", None)
    dataset, table = _dataset_and_table(destination)
    detail = "; ".join(
        f"{e.get('reason', '')}: {e.get('message', '')}".strip(": ")
        for error in errors
        for e in (error.get("errors", [error]) if isinstance(error, dict) else [error])
        if isinstance(e, dict)
    ) or str(errors)
    return make_dead_letter(
        Stage.WRITE,
        EventRejected(Reason.WRITE_REJECTED, f"{dataset}.{table}: {detail}"),
        event if event is not None else orjson.dumps(dict(row)),
        source=dataset,
        received_at=row.get("received_at"),
        message_id=row.get("id") if table != "users" else None,
    )


def failure_to_row(failure: tuple[Any, dict[str, Any], list[Any]]) -> TableRow:
    """A refused row as a TableRow again (for a retry); its schema is not needed."""
    destination, row, _errors = failure
    dataset, table = _dataset_and_table(destination)
    return TableRow(dataset, table, dict(row), {}, getattr(row, "event", None))


# Beam spreads streaming inserts over random keys, 500 per table by default, for
# parallel workers; on the local streaming runner every one of those keys would stay
# in memory for the whole run, with no parallelism to gain (transforms.beam.local_runner).
LOCAL_STREAMING_SHARDS = 1


def _local_streaming_shards(pipeline: beam.Pipeline) -> dict[str, Any]:
    """WriteToBigQuery's ``num_streaming_keys`` for the local streaming runner."""
    if on_local_streaming_runner(pipeline):
        return {"num_streaming_keys": LOCAL_STREAMING_SHARDS}
    return {}


class WriteRows(beam.PTransform):
    """TableRows -> BigQuery; returns the rows BigQuery refused for good, as
    ``(destination, row, errors)`` (Beam's failed rows; transient errors are
    retried inside the write)."""

    def __init__(self, config: WarehouseConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, rows: PCollection) -> PCollection:
        config = self._config
        if config.write_method == "STORAGE_WRITE_API":
            return (
                rows
                | "ToDestinedRows" >> beam.Map(to_destined, config.project)
                | "StorageWrite" >> StorageWriteRows(config)
            )
        client = (
            EndpointBigQueryClient(config.project, config.endpoint, config.request_timeout)
            if config.endpoint
            else None
        )
        result = (
            rows
            | "ToDestinedRows" >> beam.Map(to_destined, config.project)
            | "WriteToBigQuery"
            >> WriteToBigQuery(
                table=destination_of,
                project=config.project,
                method=config.write_method,
                create_disposition=BigQueryDisposition.CREATE_NEVER,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                ignore_unknown_columns=config.ignore_unknown_values,
                test_client=client,
                **_local_streaming_shards(rows.pipeline),
            )
        )
        if config.write_method != "STREAMING_INSERTS":
            return rows.pipeline | "NoRowLevelFailures" >> beam.Create([])
        return result.failed_rows_with_errors


class InsertMissingFn(beam.DoFn):
    """((dataset, table, shard), rows) -> rows whose id is new MERGEd into the table."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._client: bigquery.Client | None = None
        self._staged = Metrics.counter(METRICS_NAMESPACE, "merge_rows_staged")

    def setup(self) -> None:
        self._client = self._config.client()

    def process(
        self,
        element: tuple[tuple[str, str, int], Iterable[dict[str, Any]]],
        schemas: dict[Any, Any],
    ) -> Iterator[int]:
        (dataset, table, _shard), rows = element
        schema = schemas[(dataset, table)][0]
        assert self._client is not None, "setup() makes the client"
        staged = insert_missing(self._client, self._config.project, dataset, table, rows, schema)
        self._staged.inc(staged)
        yield staged


class InsertMissingById(beam.PTransform):
    """TableRows -> one staged MERGE per table shard inserting only new ids (idempotent
    reruns).

    Shards are by a hash of ``id`` (``transforms.beam.sharding``), so every copy of an id
    meets in one MERGE and a table's rows spread over workers on Dataflow (16 shards:
    within BigQuery's 2 running + 20 queued DML statements per table). Needs the schema
    step's final schemas (automatic mode)."""

    def __init__(
        self, config: WarehouseConfig, schemas: PCollection, shards: int | None = None
    ) -> None:
        super().__init__()
        self._config = config
        self._schemas = schemas
        self._shards = shards  # None: as the runner needs (``transforms.beam.sharding``)

    def expand(self, rows: PCollection) -> PCollection:
        shards = self._shards or shards_for(rows.pipeline)
        return (
            rows
            | "KeyByTableShard"
            >> beam.Map(lambda r: ((r.dataset, r.table, shard_of(r.row, shards)), r.row))
            | "RowsPerTableShard" >> beam.GroupByKey()
            | "MergeNewIds" >> beam.ParDo(InsertMissingFn(self._config), AsDict(self._schemas))
        )


class LatestTraits(beam.CombineFn):
    """One users row per user: the latest value of every trait (by received_at)."""

    def create_accumulator(self) -> dict[str, Any]:
        return {}

    def add_input(self, accumulator: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        return latest_traits(accumulator, row) if accumulator else dict(row)

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for accumulator in accumulators:
            if accumulator:
                merged = latest_traits(merged, accumulator) if merged else dict(accumulator)
        return merged

    def extract_output(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


class LatestTraitsPerUserOf(beam.CombineFn):
    """All users rows of one dataset -> one row per user, folded as ``LatestTraits`` does.

    For the local streaming runner, which would keep a state object for every user id
    for the whole run if the users were keys (``transforms.beam.local_runner``)."""

    def create_accumulator(self) -> dict[str, dict[str, Any]]:
        return {}

    def add_input(
        self, accumulator: dict[str, dict[str, Any]], row: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        known = accumulator.get(row["id"])
        accumulator[row["id"]] = latest_traits(known, row) if known else dict(row)
        return accumulator

    def merge_accumulators(
        self, accumulators: Iterable[dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for accumulator in accumulators:
            for row in accumulator.values():
                self.add_input(merged, row)
        return merged

    def extract_output(self, accumulator: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return list(accumulator.values())


class MergeUsersFn(beam.DoFn):
    """(dataset, users rows) -> MERGE into dataset.users."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._client: bigquery.Client | None = None
        self._merged = Metrics.counter(METRICS_NAMESPACE, "users_rows_merged")

    def setup(self) -> None:
        self._client = self._config.client()

    def process(
        self, element: tuple[str, Iterable[dict[str, Any]]], schemas: dict[Any, Any]
    ) -> Iterator[int]:
        dataset, rows = element
        assert self._client is not None, "setup() makes the client"
        known = schemas.get((dataset, "users"))
        if known is not None:
            schema = known[0]
        else:  # no schema step (manual mode): the live table's schema
            table = self._client.get_table(f"{self._config.project}.{dataset}.users")
            schema = from_api(table.schema)
        merged = merge_users(self._client, self._config.project, dataset, list(rows), schema)
        self._merged.inc(merged)
        yield merged


class MergeUsers(beam.PTransform):
    """Fitted users rows -> one MERGE per dataset, after the schema step."""

    def __init__(self, config: WarehouseConfig, schemas: PCollection) -> None:
        super().__init__()
        self._config = config
        self._schemas = schemas

    def expand(self, users_rows: PCollection) -> PCollection:
        if on_local_streaming_runner(users_rows.pipeline):  # keyed by dataset only
            per_dataset = (
                users_rows
                | "KeyByDataset" >> beam.Map(lambda r: (r.dataset, r.row))
                | "LatestTraitsPerUserOfDataset" >> beam.CombinePerKey(LatestTraitsPerUserOf())
            )
        else:
            per_dataset = (
                users_rows
                | "KeyByUser" >> beam.Map(lambda r: ((r.dataset, r.row["id"]), r.row))
                | "LatestTraitsPerUser" >> beam.CombinePerKey(LatestTraits())
                | "KeyByDataset" >> beam.Map(lambda kv: (kv[0][0], kv[1]))
                | "UsersPerDataset" >> beam.GroupByKey()
            )
        return per_dataset | "Merge" >> beam.ParDo(
            MergeUsersFn(self._config), AsDict(self._schemas)
        )


class DeadLettersToRows(beam.DoFn):
    """Dead letters as rows of their dataset's dead-letter table."""

    def __init__(self, default_source: str, clock: Clock) -> None:
        self._default_source = default_source
        self._clock = clock

    def process(self, dead_letter: DeadLetter) -> Iterator[TableRow]:
        dataset = dead_letter_dataset(dead_letter.source, self._default_source)
        row = dead_letter_row(dead_letter, format_timestamp(self._clock()))
        yield TableRow(dataset, DEAD_LETTER_TABLE, row, DEAD_LETTER_SCHEMA)


def merged_dead_letter(dead_letters: Iterable[DeadLetter]) -> DeadLetter:
    """Several dead letters of one event (rows of several tables refused) as one: the first
    by (stage, reason, error), holding every distinct error."""
    ordered = sorted(dead_letters, key=lambda d: (d.stage, d.reason, d.error))
    errors = list(dict.fromkeys(d.error for d in ordered))
    return ordered[0]._replace(error="; ".join(errors)) if len(errors) > 1 else ordered[0]


class OneDeadLetterPerEvent(beam.PTransform):
    """Late dead letters (schema step, writes, loads) -> one per event, so an event whose
    rows several tables refused is replayed once (batch graphs)."""

    def expand(self, dead_letters: PCollection) -> PCollection:
        return (
            dead_letters
            | "KeyByEvent" >> beam.Map(lambda d: ((d.source, d.payload), d))
            | "DeadLettersOfEvent" >> beam.GroupByKey()
            | "MergeDeadLettersOfEvent" >> beam.Map(lambda kv: merged_dead_letter(kv[1]))
        )


class DeadLetterNotStored(RuntimeError):
    """A dead letter could not be stored either: the run must fail (the bundle retries)."""


def report_lost(dead_letter: DeadLetter) -> None:
    """A dead letter that could not be stored: counted, logged, and the run fails, so
    nothing ends as only a counter and a log line (the bundle retries on Dataflow)."""
    Metrics.counter(METRICS_NAMESPACE, "dead_letters_not_stored").inc()
    _LOG.error(
        "dead letter could not be stored: %s %s", dead_letter.reason, dead_letter.error[:500]
    )
    raise DeadLetterNotStored(
        f"a {dead_letter.reason} dead letter could not be stored: {dead_letter.error[:300]}"
    )
