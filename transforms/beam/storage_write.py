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
from transforms.beam.event_model import METRICS_NAMESPACE
from transforms.beam.sharding import shard_of, shards_for

BATCH_ROWS = 500
BATCH_SECONDS = 1.0  # streaming: a batch waits at most this long for more rows
DATAFLOW_SHARDS = 4  # streams per table on Dataflow; one worker locally


# Kept by the worker process, not the DoFn: the local streaming runner unpickles a fresh
# DoFn for every bundle, which would open a gRPC channel and read every table each time.
_SHARED_LOCK = threading.Lock()
_WRITE_CLIENTS: dict[str | None, Any] = {}
_CODECS = storage_write.TableCodecs()


def _write_client(endpoint: str | None) -> Any:
    with _SHARED_LOCK:
        if endpoint not in _WRITE_CLIENTS:
            _WRITE_CLIENTS[endpoint] = storage_write.write_client(endpoint)
        return _WRITE_CLIENTS[endpoint]


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

    def process(
        self,
        element: tuple[tuple[str, str, int], Iterable[Any]],
        stream: Any = beam.DoFn.StateParam(STREAM),  # noqa: B008 - Beam's way of naming state
        offset: Any = beam.DoFn.StateParam(OFFSET),  # noqa: B008
    ) -> Iterator[Any]:
        (dataset, table, _shard), batch = element
        project = self._config.project
        destination = f"{project}:{dataset}.{table}"
        codec, encoded, failures = _CODECS.encode(
            self._tables, (project, dataset, table), list(batch), destination
        )
        yield from failures
        name, next_offset = stream.read(), offset.read() or 0
        table_path = storage_write.table_path(project, dataset, table)
        for chunk in _chunks(encoded, storage_write.MAX_REQUEST_BYTES):
            name, next_offset, outcome, created = storage_write.append_replacing_lost(
                self._client,
                table_path,
                name,
                next_offset,
                codec,
                [data for _, data in chunk],
                self._config.request_timeout,
            )
            self._streams.inc(created)
            self._requests.inc(outcome.requests)
            self._rows.inc(outcome.written)
            next_offset += outcome.written
            for index, message in outcome.refused.items():
                yield storage_write.failure(destination, chunk[index][0], message)
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
