"""Writes through the Storage Write API (``--write_method=STORAGE_WRITE_API``).

Rows are batched per (table, shard) and each shard appends to a COMMITTED stream of
its own whose name and next offset are kept in Beam state (``AppendRowsFn``): a
bundle that fails and is retried sends the same batches at the same offsets, which
BigQuery answers ALREADY_EXISTS for what it already holds (``pipeline.warehouse.
storage_write``), so a retry adds nothing. A stream that is gone (expired, an
emulator restarted) is replaced by a new one. What comes back has the shape of
Beam's failed rows, ``(destination, row, errors)``: a row naming a column the table
lacks ("no such field", which streaming retries later, as for streaming inserts), a
value its column cannot hold, or a row BigQuery named in ``row_errors``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms import userstate

from pipeline.warehouse import storage_write
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.schema import from_api
from transforms.beam.event_model import METRICS_NAMESPACE
from transforms.beam.sharding import shard_of, shards_for

BATCH_ROWS = 500
BATCH_SECONDS = 1.0  # streaming: a batch waits at most this long for more rows
DATAFLOW_SHARDS = 4  # streams per table on Dataflow; one worker locally


# Kept by the worker process, not the DoFn: the local streaming runner unpickles a fresh
# DoFn for every bundle, which would open a gRPC channel and read every table each time.
# A cached codec is replaced as soon as a row no longer fits it (``AppendRowsFn._encoded``).
_SHARED_LOCK = threading.Lock()
_WRITE_CLIENTS: dict[str | None, Any] = {}
_CODECS: dict[tuple[str, str, str], tuple[frozenset[str], storage_write.RowCodec]] = {}


def _write_client(endpoint: str | None) -> Any:
    with _SHARED_LOCK:
        if endpoint not in _WRITE_CLIENTS:
            _WRITE_CLIENTS[endpoint] = storage_write.write_client(endpoint)
        return _WRITE_CLIENTS[endpoint]


def _failure(destination: str, row: Any, message: str) -> tuple[str, Any, list[dict[str, str]]]:
    return destination, row, [{"reason": "invalid", "message": message}]


class AppendRowsFn(beam.DoFn):
    """((dataset, table, shard), rows) -> the rows appended; refused ones as failures."""

    STREAM = userstate.ReadModifyWriteStateSpec("stream", StrUtf8Coder())
    OFFSET = userstate.ReadModifyWriteStateSpec("offset", VarIntCoder())

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._client: Any = None
        self._tables: Any = None
        self._requests = Metrics.counter(METRICS_NAMESPACE, "storage_write_append_requests")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "storage_write_rows")
        self._streams = Metrics.counter(METRICS_NAMESPACE, "storage_write_streams_created")

    def setup(self) -> None:
        self._client = _write_client(self._config.storage_endpoint)
        self._tables = self._config.client()

    def teardown(self) -> None:
        if self._tables is not None:
            self._tables.close()

    def _codec(
        self, dataset: str, table: str, fresh: bool = False
    ) -> tuple[frozenset[str], storage_write.RowCodec]:
        """The table's columns and codec, read from the live table when ``fresh`` or not
        known yet (one get per table, again only after a schema change)."""
        key = (self._config.project, dataset, table)
        known = _CODECS.get(key)
        if known is None or fresh:
            live = self._tables.get_table(".".join(key))
            schema = from_api(live.schema)
            known = (frozenset(schema), storage_write.codec_for(schema))
            with _SHARED_LOCK:
                _CODECS[key] = known
        return known

    def _encoded(
        self, dataset: str, table: str, rows: list[Any], destination: str
    ) -> tuple[storage_write.RowCodec, list[tuple[Any, bytes]], list[Any]]:
        """The rows as proto bytes, and failures for rows that do not fit. A row that does
        not fit the cached schema has the table read again first (a column added or
        widened by the schema step since)."""
        for fresh in (False, True):
            columns, codec = self._codec(dataset, table, fresh)
            encoded: list[tuple[Any, bytes]] = []
            failures: list[Any] = []
            for row in rows:
                unknown = [name for name in row if name not in columns]
                if unknown:
                    failures.append(_failure(destination, row, f"no such field: {unknown[0]}."))
                    continue
                try:
                    encoded.append((row, codec.encode(row)))
                except (ValueError, TypeError, OverflowError) as error:
                    failures.append(_failure(destination, row, f"invalid value: {error}"))
            if not failures:
                break
        return codec, encoded, failures

    def process(
        self,
        element: tuple[tuple[str, str, int], Iterable[Any]],
        stream=beam.DoFn.StateParam(STREAM),  # noqa: B008 - Beam's way of naming state
        offset=beam.DoFn.StateParam(OFFSET),  # noqa: B008
    ) -> Iterator[Any]:
        (dataset, table, _shard), batch = element
        rows = list(batch)
        destination = f"{self._config.project}:{dataset}.{table}"
        codec, encoded, failures = self._encoded(dataset, table, rows, destination)
        yield from failures
        name, next_offset = stream.read(), offset.read() or 0
        table_path = storage_write.table_path(self._config.project, dataset, table)
        for chunk in _chunks(encoded, storage_write.MAX_REQUEST_BYTES):
            for _ in range(2):  # a lost stream is replaced once per chunk
                if name is None:
                    name, next_offset = storage_write.create_stream(self._client, table_path), 0
                    self._streams.inc()
                try:
                    outcome = storage_write.append(
                        self._client,
                        name,
                        codec,
                        [data for _, data in chunk],
                        next_offset,
                        self._config.request_timeout,
                    )
                    break
                except storage_write.StreamLost:
                    name = None
            else:
                raise storage_write.StreamLost(f"{table_path}: no usable write stream")
            self._requests.inc(outcome.requests)
            self._rows.inc(outcome.written)
            next_offset += outcome.written
            for index, message in outcome.refused.items():
                yield _failure(destination, chunk[index][0], message)
        if name is not None:
            stream.write(name)
            offset.write(next_offset)


def _chunks(encoded: list[tuple[Any, bytes]], limit: int) -> Iterator[list[tuple[Any, bytes]]]:
    """Consecutive runs of rows whose bytes stay under ``limit`` (one request each)."""
    chunk: list[tuple[Any, bytes]] = []
    size = 0
    for item in encoded:
        if chunk and size + len(item[1]) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1])
    if chunk:
        yield chunk


class StorageWriteRows(beam.PTransform):
    """DestinedRows -> committed streams; returns failures as ``(destination, row, errors)``."""

    def __init__(self, config: WarehouseConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, rows: PCollection) -> PCollection:
        pipeline = rows.pipeline
        shards = shards_for(pipeline, DATAFLOW_SHARDS)
        streaming = pipeline.options.view_as(beam.options.pipeline_options.StandardOptions)
        buffering = {"max_buffering_duration_secs": BATCH_SECONDS} if streaming.streaming else {}
        return (
            rows
            | "KeyByTableShard"
            >> beam.Map(_keyed, shards).with_output_types(tuple[tuple[str, str, int], Any])
            | "BatchPerTableShard" >> beam.GroupIntoBatches(BATCH_ROWS, **buffering)
            | "AppendRows" >> beam.ParDo(AppendRowsFn(self._config))
        )


def _keyed(row: Any, shards: int) -> tuple[tuple[str, str, int], Any]:
    dataset, _, table = row.table_spec.split(":")[-1].partition(".")
    return (dataset, table, shard_of(row, shards)), row
