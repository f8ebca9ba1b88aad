"""The BigQuery Storage Write API, Python-native: proto rows into committed streams.

google-cloud-bigquery-storage's ``BigQueryWriteClient`` (no Java expansion service):
rows become proto2 messages of a descriptor built from the table's BigQuery schema
(cached per schema), appended to a COMMITTED stream at explicit offsets. Offsets make
a retry safe: an append BigQuery already holds is answered ALREADY_EXISTS, which is
success, not a duplicate, so a request resent after a reset connection or a retried
bundle adds nothing. A request BigQuery refuses for some rows (``row_errors``) writes
nothing: those rows are reported and the others sent again at the same offset.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import grpc
from google.api_core import exceptions
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pipeline.warehouse import identifiers
from pipeline.warehouse.schema import from_api

_LOG = logging.getLogger(__name__)
_FIELD = descriptor_pb2.FieldDescriptorProto
# BigQuery type -> proto field type (the documented wire types); other types as text.
PROTO_TYPES = {
    "STRING": _FIELD.TYPE_STRING,
    "INTEGER": _FIELD.TYPE_INT64,
    "INT64": _FIELD.TYPE_INT64,
    "FLOAT": _FIELD.TYPE_DOUBLE,
    "FLOAT64": _FIELD.TYPE_DOUBLE,
    "BOOLEAN": _FIELD.TYPE_BOOL,
    "BOOL": _FIELD.TYPE_BOOL,
    "TIMESTAMP": _FIELD.TYPE_INT64,  # microseconds since the epoch
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Requests stay under this many bytes of rows: BigQuery takes 10 MB, the emulator 4 MiB.
MAX_REQUEST_BYTES = 3_500_000
MAX_ATTEMPTS = 6
APPEND_TIMEOUT_S = 60.0  # an unanswered append is sent again (--request_timeout_seconds)
BACKOFF_S = 0.5
_RETRYABLE = (
    exceptions.ServiceUnavailable,
    exceptions.InternalServerError,
    exceptions.DeadlineExceeded,
    exceptions.Aborted,
    exceptions.TooManyRequests,
    exceptions.ResourceExhausted,
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# google.rpc codes of an answer's in-band error.
_OK, _ALREADY_EXISTS = 0, grpc.StatusCode.ALREADY_EXISTS.value[0]
_STREAM_GONE = {code.value[0] for code in (
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION
)}  # fmt: skip
_TRANSIENT = {code.value[0] for code in (
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)}  # fmt: skip


class StreamLost(RuntimeError):
    """The stream is gone or behind our offset (expired, emulator restarted): start a new one."""


@dataclass(frozen=True)
class RowCodec:
    """A table schema's proto descriptor and message class, and how values are converted."""

    descriptor: descriptor_pb2.DescriptorProto
    message: Any
    timestamps: frozenset[str]

    def encode(self, row: Mapping[str, Any]) -> bytes:
        """One row as proto bytes; None leaves the field unset (NULL). Raises ValueError or
        TypeError for a value its column cannot hold (a refused row, not a refused request)."""
        message = self.message()
        for name, value in row.items():
            if value is None:
                continue
            if name in self.timestamps:
                value = (datetime.fromisoformat(value) - EPOCH) // MICROSECOND
            setattr(message, name, value)
        return message.SerializeToString()


def codec_for(schema: Mapping[str, str]) -> RowCodec:
    """A codec for a table schema ``{column: type}`` (all fields optional: NULLABLE)."""
    proto = descriptor_pb2.DescriptorProto(name="Row")
    for number, (name, kind) in enumerate(sorted(schema.items()), start=1):
        identifiers.column(name)
        proto.field.add(
            name=name,
            number=number,
            type=PROTO_TYPES.get(kind, _FIELD.TYPE_STRING),
            label=_FIELD.LABEL_OPTIONAL,
        )
    file = descriptor_pb2.FileDescriptorProto(
        name="opentrack_row.proto", package="opentrack", syntax="proto2"
    )
    file.message_type.add().CopyFrom(proto)
    pool = descriptor_pool.DescriptorPool()  # one per schema: classes never clash
    pool.Add(file)
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName("opentrack.Row"))
    timestamps = frozenset(name for name, kind in schema.items() if kind == "TIMESTAMP")
    return RowCodec(proto, message, timestamps)


def write_client(endpoint: str | None) -> BigQueryWriteClient:
    """A write client: Google's endpoint with Application Default Credentials over TLS, an
    endpoint ``host:port`` of one's own over TLS, or a loopback emulator in the clear."""
    if not endpoint:
        return BigQueryWriteClient()
    host = urlparse(f"//{endpoint}").hostname
    if host in _LOOPBACK:
        channel = grpc.insecure_channel(
            endpoint,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    return BigQueryWriteClient(client_options={"api_endpoint": endpoint})


def table_path(project: str, dataset: str, table: str) -> str:
    return (
        f"projects/{identifiers.project_id(project)}/datasets/{identifiers.dataset_id(dataset)}"
        f"/tables/{identifiers.table_id(table)}"
    )


def create_stream(client: BigQueryWriteClient, table: str) -> str:
    stream = types.WriteStream(type_=types.WriteStream.Type.COMMITTED)
    return client.create_write_stream(parent=table, write_stream=stream).name


_RawRequest = types.AppendRowsRequest.pb()  # proto-plus would cost ~1 µs per row more


def _request(stream: str, codec: RowCodec, rows: Sequence[bytes], offset: int) -> Any:
    request = _RawRequest()
    request.write_stream = stream
    request.proto_rows.writer_schema.proto_descriptor.CopyFrom(codec.descriptor)
    request.proto_rows.rows.serialized_rows.extend(rows)
    request.offset.value = offset
    return types.AppendRowsRequest.wrap(request)


@dataclass
class AppendOutcome:
    """What one append did: rows written (or already there), and refused rows by index."""

    written: int
    refused: dict[int, str]
    requests: int


def _answer(client: BigQueryWriteClient, request: Any, timeout: float) -> types.AppendRowsResponse:
    """One request on one bidi call, and its answer within ``timeout`` seconds; a call that
    ends without one (the connection dropped) is a lost answer, sent again by the caller."""
    for response in client.append_rows(iter([request]), timeout=timeout):
        return response
    raise exceptions.ServiceUnavailable("the append's answer never came (connection closed)")


def append(
    client: BigQueryWriteClient,
    stream: str,
    codec: RowCodec,
    rows: Sequence[bytes],
    offset: int,
    timeout: float = APPEND_TIMEOUT_S,
) -> AppendOutcome:
    """Append ``rows`` at ``offset`` until each is written or refused. Refused rows (BigQuery's
    ``row_errors``: the request wrote nothing) are taken out and the rest sent again at the
    same offset; a lost connection resends the same request (ALREADY_EXISTS: it landed)."""
    pending = list(range(len(rows)))
    refused: dict[int, str] = {}
    requests = 0
    attempt = 0
    while pending:
        request = _request(stream, codec, [rows[i] for i in pending], offset)
        requests += 1
        try:
            response = _answer(client, request, timeout)
        except _RETRYABLE + (exceptions.Unknown,) as failure:
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                raise
            _LOG.warning("append to %s failed (%s); sending it again", stream, failure)
            time.sleep(BACKOFF_S * 2**attempt * (0.5 + random.random()))
            continue
        except (exceptions.NotFound, exceptions.FailedPrecondition) as gone:
            raise StreamLost(f"{stream}: {gone}") from gone
        code = response.error.code if response.error else 0
        if response.row_errors:
            for error in response.row_errors:
                index = pending[error.index]
                refused[index] = error.message or types.RowError.RowErrorCode(error.code).name
            pending = [i for i in pending if i not in refused]
            continue
        if code in (_OK, _ALREADY_EXISTS):
            return AppendOutcome(len(pending), refused, requests)
        if code in _STREAM_GONE:
            raise StreamLost(f"{stream}: {response.error.message}")
        if code in _TRANSIENT and attempt + 1 < MAX_ATTEMPTS:
            attempt += 1
            time.sleep(BACKOFF_S * 2**attempt * (0.5 + random.random()))
            continue
        # Refused as a whole for a reason of the request (e.g. a schema BigQuery does not
        # take): every row gets the error, for the retry of unseen columns or a dead letter.
        for index in pending:
            refused[index] = response.error.message or f"append refused (code {code})"
        pending = []
    return AppendOutcome(0, refused, requests)


def append_replacing_lost(
    client: BigQueryWriteClient,
    table: str,
    stream: str | None,
    offset: int,
    codec: RowCodec,
    rows: Sequence[bytes],
    timeout: float = APPEND_TIMEOUT_S,
) -> tuple[str, int, AppendOutcome, int]:
    """``append`` to ``stream`` at ``offset``, on a new stream of ``table`` when there is
    none or it is lost (once). Returns the stream, the offset the rows went to, the
    outcome and how many streams were created."""
    created = 0
    for _ in range(2):
        if stream is None:
            stream, offset = create_stream(client, table), 0
            created += 1
        try:
            return stream, offset, append(client, stream, codec, rows, offset, timeout), created
        except StreamLost:
            stream = None
    raise StreamLost(f"{table}: no usable write stream")


Failure = tuple[str, Any, list[dict[str, str]]]


def failure(destination: str, row: Any, message: str) -> Failure:
    """A refused row in the shape of Beam's failed rows: ``(destination, row, errors)``."""
    return destination, row, [{"reason": "invalid", "message": message}]


class TableCodecs:
    """Each table's columns and row codec, read from the live table once and again only
    when a row no longer fits (a column added or widened by the schema step since).

    Shared by the worker process, not kept per DoFn: the local streaming runner unpickles
    a fresh DoFn for every bundle, which would read every table each time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str, str], tuple[frozenset[str], RowCodec]] = {}

    def _codec(
        self, tables: Any, key: tuple[str, str, str], fresh: bool
    ) -> tuple[frozenset[str], RowCodec]:
        known = self._known.get(key)
        if known is None or fresh:
            schema = from_api(tables.get_table(".".join(key)).schema)
            known = (frozenset(schema), codec_for(schema))
            with self._lock:
                self._known[key] = known
        return known

    def encode(
        self, tables: Any, key: tuple[str, str, str], rows: Sequence[Any], destination: str
    ) -> tuple[RowCodec, list[tuple[Any, bytes]], list[Failure]]:
        """The rows of table ``key`` (project, dataset, table) as proto bytes, and the
        failures of rows that do not fit, after one fresh read of the table."""
        for fresh in (False, True):
            columns, codec = self._codec(tables, key, fresh)
            encoded: list[tuple[Any, bytes]] = []
            failures: list[Failure] = []
            for row in rows:
                unknown = [name for name in row if name not in columns]
                if unknown:
                    failures.append(failure(destination, row, f"no such field: {unknown[0]}."))
                    continue
                try:
                    encoded.append((row, codec.encode(row)))
                except (ValueError, TypeError, OverflowError) as error:
                    failures.append(failure(destination, row, f"invalid value: {error}"))
            if not failures:
                break
        return codec, encoded, failures
