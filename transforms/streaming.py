"""The streaming schema path: side-input schemas, a keyed mutation path, fences, retries.

Batch runs know every table's union schema before writing (``schema_sync``).
A stream cannot, so each row is routed:

* ``RouteBySchema`` compares it with the known schema of its table: the side
  input (all managed tables, re-read every cache TTL by a periodic impulse)
  overlaid with this worker's own schema cache, which ``ApplyChanges`` updates
  the moment it changes a table, so the worker that applied a change never
  re-routes rows for it. A row that fits is coerced and goes to the write.
* Others go to the mutation path, keyed by table and batched for a short
  time (``GroupIntoBatches``): ``ApplyChanges`` merges the schemas of the
  batch, applies them once through the schema manager (fresh read, plan,
  ETag-guarded patch, retry; at most 5 updates per table in 10 s) and
  releases the rows, coerced to the new schema.
* A change that rewrites the table (widening to STRING) fences the table on
  this worker first: new rows for it are held in the mutation path, in-flight
  inserts are given ``drain_seconds`` to land, the table is rewritten, and the
  fence lifts. The fence is per worker: run streaming jobs whose tables may
  need a rewrite with one worker, or pre-widen the column (``schema apply``).
* Inserts refused because a new column is not yet visible to the streaming
  backend ("no such field", for seconds after a change) are held and retried
  after each of ``retry_delays``; only then do they become dead letters.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from pipeline.warehouse.client import NotFound
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SchemaManager
from pipeline.warehouse.merge_rows import STAGING_PREFIX as MERGE_STAGING
from pipeline.warehouse.schema import RowMisfit, fit_row, from_api, plan_schema, union
from pipeline.warehouse.users import STAGING_PREFIX as USERS_STAGING
from transforms.deadletter import DeadLetter
from transforms.event_model import DEAD_LETTERS, METRICS_NAMESPACE
from transforms.normalize import TableRow
from transforms.schema_sync import fit_to_table

_LOG = logging.getLogger(__name__)
MUTATE = "mutate"
STAGING_PREFIXES = (USERS_STAGING, MERGE_STAGING)  # short-lived tables, never schemas to know
TableKey = tuple[str, str]

# -- one schema manager and one set of fences per worker process ---------------------

_MANAGERS: dict[str, SchemaManager] = {}
_FENCES: dict[TableKey, threading.Event] = {}
_REGISTRY_LOCK = threading.Lock()


def worker_manager(config: WarehouseConfig) -> SchemaManager:
    """The process-wide schema manager for ``config`` (shared by all DoFns)."""
    key = repr(config)
    with _REGISTRY_LOCK:
        manager = _MANAGERS.get(key)
        if manager is None:
            manager = _MANAGERS[key] = config.manager()
        return manager


def is_fenced(table: TableKey) -> bool:
    fence = _FENCES.get(table)
    return fence is not None and fence.is_set()


def set_fence(table: TableKey, up: bool) -> None:
    with _REGISTRY_LOCK:
        fence = _FENCES.setdefault(table, threading.Event())
    if up:
        fence.set()
    else:
        fence.clear()


# -- the side input ------------------------------------------------------------------


def load_managed_schemas(config: WarehouseConfig) -> dict[TableKey, dict[str, str]]:
    """Schemas of every table in the datasets this product manages (label
    ``managed_by=opentrack``): one list per dataset and one read per table,
    every cache TTL, whatever the event rate."""
    client = config.client()
    schemas: dict[TableKey, dict[str, str]] = {}
    for item in client.list_datasets():
        if (item.labels or {}).get("managed_by") != "opentrack":
            continue
        for table in client.list_tables(item.dataset_id):
            if table.table_type != "TABLE" or table.table_id.startswith(STAGING_PREFIXES):
                continue
            try:
                live = client.get_table(table.reference)
            except NotFound:
                continue  # dropped since it was listed
            schemas[(item.dataset_id, table.table_id)] = from_api(live.schema)
    Metrics.counter(METRICS_NAMESPACE, "schema_side_input_refreshes").inc()
    return schemas


class LoadSchemas(beam.DoFn):
    """Impulse -> the current schemas of all managed tables."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config

    def process(self, _tick: Any) -> Iterator[dict[TableKey, dict[str, str]]]:
        yield load_managed_schemas(self._config)


# -- routing -------------------------------------------------------------------------


class RouteBySchema(beam.DoFn):
    """Rows that fit their table go on coerced; the others take the mutation path."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._manager: SchemaManager | None = None
        self._direct = Metrics.counter(METRICS_NAMESPACE, "schema_rows_direct")
        self._mutated = Metrics.counter(METRICS_NAMESPACE, "schema_rows_to_mutation_path")

    def setup(self) -> None:
        self._manager = worker_manager(self._config)

    def process(
        self, row: TableRow, side_schemas: Mapping[TableKey, dict[str, str]] | None = None
    ) -> Iterator[TableRow | TaggedOutput]:
        key = (row.dataset, row.table)
        known = self._manager.peek(*key) if self._manager else None  # type: ignore[union-attr]
        if known is None and side_schemas:
            known = side_schemas.get(key)
        if known is not None and not is_fenced(key):
            plan = plan_schema(known, row.schema)
            if not plan.changes and not plan.refused:
                try:
                    fitted = fit_row(row.row, row.schema, known, row.originals)
                except RowMisfit:
                    pass
                else:
                    self._direct.inc()
                    yield TableRow(row.dataset, row.table, fitted, row.schema, row.event)
                    return
        self._mutated.inc()
        yield TaggedOutput(MUTATE, (f"{row.dataset}.{row.table}", row))


class ApplyChanges(beam.DoFn):
    """(table, rows) -> the table changed once for all of them, rows released."""

    def __init__(self, config: WarehouseConfig, drain_seconds: float = 2.0) -> None:
        self._config = config
        self._drain = drain_seconds
        self._manager: SchemaManager | None = None
        self._changes = Metrics.counter(METRICS_NAMESPACE, "schema_changes_applied")

    def setup(self) -> None:
        self._manager = worker_manager(self._config)

    def process(self, batch: tuple[str, Iterable[TableRow]]) -> Iterator[TableRow | TaggedOutput]:
        rows = list(batch[1])
        dataset, table = rows[0].dataset, rows[0].table
        key = (dataset, table)
        manager = self._manager
        assert manager is not None
        wanted = union(row.schema for row in rows)
        # The schema as of now (one read if the cache is stale) decides whether to fence.
        current = manager.cached_schema(dataset, table)
        plan = plan_schema(current, wanted) if current is not None else None
        # An in-place INTEGER -> FLOAT may turn into a rewrite as STRING (the manager
        # keeps integers beyond 2**53 exact), so it is fenced like one.
        rewrite = plan is not None and bool(plan.rewrite or plan.widen_in_place)
        if rewrite:
            set_fence(key, True)
            time.sleep(self._drain)  # let inserts already handed to the writer land
        try:
            result = manager.ensure(dataset, table, wanted)
        finally:
            if rewrite:
                set_fence(key, False)
        if result.changed:
            self._changes.inc()
        for row in rows:
            fitted = fit_to_table(row, result.schema, result.refused)
            yield TaggedOutput(DEAD_LETTERS, fitted) if isinstance(fitted, DeadLetter) else fitted


# -- delayed retry of rows whose new column is not yet visible ------------------------


def schema_not_visible(errors: Iterable[Any]) -> bool:
    """True for BigQuery's transient 'no such field' refusals after a schema change."""
    for error in errors:
        entries = error.get("errors", [error]) if isinstance(error, dict) else [error]
        for entry in entries:
            if isinstance(entry, dict) and "no such field" in str(entry.get("message", "")).lower():
                return True
    return False


class HoldRows(beam.DoFn):
    """(key, row) -> the rows again after ``delay_seconds`` of processing time."""

    ROWS = userstate.BagStateSpec("rows", PickleCoder())
    ARMED = userstate.ReadModifyWriteStateSpec("armed", BooleanCoder())
    TIMER = userstate.TimerSpec("release", TimeDomain.REAL_TIME)

    def __init__(
        self, delay_seconds: float, now: Callable[[], Timestamp] = Timestamp.now
    ) -> None:
        self._delay = delay_seconds
        self._now = now  # the runner's processing-time clock (a test clock in TestStream)

    def process(
        self,
        element: tuple[str, Any],
        rows=beam.DoFn.StateParam(ROWS),  # noqa: ANN001, B008 - Beam state params
        armed=beam.DoFn.StateParam(ARMED),  # noqa: ANN001, B008
        timer=beam.DoFn.TimerParam(TIMER),  # noqa: ANN001, B008
    ) -> None:
        rows.add(element[1])
        if not armed.read():  # the first row held sets the release time; later ones wait for it
            armed.write(True)
            timer.set(self._now() + self._delay)

    @userstate.on_timer(TIMER)
    def release(
        self,
        rows=beam.DoFn.StateParam(ROWS),  # noqa: ANN001, B008
        armed=beam.DoFn.StateParam(ARMED),  # noqa: ANN001, B008
    ) -> Iterator[Any]:
        held = list(rows.read())
        rows.clear()
        armed.clear()
        Metrics.counter(METRICS_NAMESPACE, "write_retries").inc(len(held))
        yield from held
