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
* A change that rewrites the table (widening to STRING) fences it for every
  worker through BigQuery itself (``warehouse.fence``): the table gets a label
  with a deadline, every worker that sees it (in its schema cache or the side
  input, both at most ``cache_ttl`` old) holds the table's rows in
  ``HoldWhileFenced``, the marking worker waits ``cache_ttl + drain_seconds``,
  rewrites, and clears the label; held rows then take the schema step again.
  An in-place INTEGER -> FLOAT rewrites nothing: only this worker's own writes
  for the table pause for ``drain_seconds``.
* Inserts refused because a new column is not yet visible to the streaming
  backend ("no such field", for seconds after a change) are held and retried
  after each of ``retry_delays``; only then do they become dead letters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp
from google.api_core.exceptions import GoogleAPIError

from pipeline.warehouse import fence
from pipeline.warehouse.client import NotFound
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SchemaManager
from pipeline.warehouse.merge_rows import STAGING_PREFIX as MERGE_STAGING
from pipeline.warehouse.schema import RowMisfit, fit_row, from_api, plan_schema, union
from pipeline.warehouse.users import STAGING_PREFIX as USERS_STAGING
from transforms.beam.event_model import DEAD_LETTERS, METRICS_NAMESPACE
from transforms.beam.schema_sync import fit_to_table
from transforms.model.deadletter import DeadLetter
from transforms.model.normalize import TableRow

_LOG = logging.getLogger(__name__)
MUTATE = "mutate"
FENCED = "fenced"
STAGING_PREFIXES = (USERS_STAGING, MERGE_STAGING)  # short-lived tables, never schemas to know
TableKey = tuple[str, str]

# -- one schema manager and one set of fences per worker process ---------------------

_MANAGERS: dict[str, SchemaManager] = {}
_FENCES: dict[TableKey, threading.Event] = {}
_HOLDS_LOGGED: set[tuple[TableKey, float]] = set()  # one warning per table and mark
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


@dataclass(frozen=True)
class ManagedTables:
    """What every worker knows of the managed tables: schemas and live rewrite marks."""

    schemas: dict[TableKey, dict[str, str]]
    fences: dict[TableKey, float]  # table -> deadline of its rewrite mark (warehouse.fence)


def load_managed_tables(config: WarehouseConfig) -> ManagedTables:
    """Schemas and rewrite marks of every table in the datasets this product manages
    (label ``managed_by=opentrack``): one list per dataset and one read per table,
    every cache TTL, whatever the event rate."""
    client = config.client()
    schemas: dict[TableKey, dict[str, str]] = {}
    fences: dict[TableKey, float] = {}
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
            key = (item.dataset_id, table.table_id)
            schemas[key] = from_api(live.schema)
            deadline = fence.deadline_of(live.labels)
            if deadline is not None:
                fences[key] = deadline
    Metrics.counter(METRICS_NAMESPACE, "schema_side_input_refreshes").inc()
    return ManagedTables(schemas, fences)


class LoadSchemas(beam.DoFn):
    """Impulse -> the current schemas and rewrite marks of all managed tables."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config

    def process(self, _tick: Any) -> Iterator[ManagedTables]:
        yield load_managed_tables(self._config)


# -- routing -------------------------------------------------------------------------


class RouteBySchema(beam.DoFn):
    """Rows that fit their table go on coerced; the others, and every row of a table
    fenced for a rewrite, take the mutation path."""

    def __init__(self, config: WarehouseConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._manager: SchemaManager | None = None
        self._direct = Metrics.counter(METRICS_NAMESPACE, "schema_rows_direct")
        self._mutated = Metrics.counter(METRICS_NAMESPACE, "schema_rows_to_mutation_path")

    def setup(self) -> None:
        self._manager = worker_manager(self._config)

    def _fenced(self, key: TableKey, side: ManagedTables | None) -> bool:
        if is_fenced(key):
            return True
        now = self._clock()
        assert self._manager is not None
        if fence.is_live(self._manager.fence_deadline(*key), now):
            return True
        return side is not None and fence.is_live(side.fences.get(key), now)

    def process(
        self, row: TableRow, side: ManagedTables | None = None
    ) -> Iterator[TableRow | TaggedOutput]:
        key = (row.dataset, row.table)
        known = self._manager.peek(*key) if self._manager else None
        if known is None and side is not None:
            known = side.schemas.get(key)
        if known is not None and not self._fenced(key, side):
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


@dataclass(frozen=True)
class Settled:
    """A batch of one table's rows after the schema step: released, or held."""

    released: list[TableRow | TaggedOutput]
    held: list[TableRow]


class _Settle:
    """Change one table once for a batch of its rows, fencing what must be fenced.

    * A table another worker has marked for a rewrite: the rows are held.
    * In-place INTEGER -> FLOAT (a metadata change, nothing rewritten): this
      worker's own writes for the table pause for ``drain`` seconds.
    * A rewrite (-> STRING): the table is marked (``warehouse.fence``), this
      worker waits ``cache_ttl + drain`` so every worker has seen the mark and
      finished the bundles it started before, rewrites, and clears the mark.
    """

    def __init__(
        self,
        manager: SchemaManager,
        cache_ttl: float,
        drain: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._manager = manager
        self._wait = cache_ttl + drain
        self._drain = drain
        self._clock = clock
        self._sleep = sleep
        self._changes = Metrics.counter(METRICS_NAMESPACE, "schema_changes_applied")
        self._held = Metrics.counter(METRICS_NAMESPACE, "schema_rows_held_by_fence")

    def __call__(self, rows: list[TableRow], fresh: bool = False) -> Settled:
        """``fresh``: read the table now rather than trust the cache (held rows
        re-checking a mark the cache may still show for up to ``cache_ttl``)."""
        dataset, table = rows[0].dataset, rows[0].table
        key = (dataset, table)
        manager = self._manager
        if fresh:
            manager.read_fence(dataset, table)
        current = manager.cached_schema(dataset, table)  # at most cache_ttl old
        deadline = manager.fence_deadline(dataset, table)
        if deadline is not None and fence.is_live(deadline, self._clock()):
            return self._hold(key, rows, deadline)
        wanted = union(row.schema for row in rows)
        plan = plan_schema(current, wanted) if current is not None else None
        rewrite = plan is not None and bool(plan.rewrite)
        if plan is not None and plan.widen_in_place and not rewrite:
            # The manager keeps integers beyond 2**53 exact: INTEGER -> FLOAT may
            # turn into a rewrite as STRING, which needs the shared fence.
            rewrite = bool(manager.exact_plan(dataset, table, wanted).rewrite)
        in_place = plan is not None and bool(plan.widen_in_place) and not rewrite
        marked = False
        try:
            if rewrite:
                deadline = self._clock() + self._wait + fence.REWRITE_BUDGET_SECONDS
                held_by = manager.mark_fence(dataset, table, deadline)
                if held_by is not None:  # another worker marked it first
                    return self._hold(key, rows, held_by)
                marked = True
                _LOG.warning(
                    "%s.%s fenced for a rewrite: every worker holds its rows, %.0f s from now "
                    "it is rewritten", dataset, table, self._wait,
                )  # fmt: skip
                self._sleep(self._wait)
            elif in_place:
                set_fence(key, True)
                self._sleep(self._drain)  # let inserts already handed to the writer land
            result = manager.ensure(dataset, table, wanted)
        finally:
            if in_place:
                set_fence(key, False)
            if marked:
                self._clear(dataset, table)
        if result.changed:
            self._changes.inc()
        released: list[TableRow | TaggedOutput] = []
        for row in rows:
            fitted = fit_to_table(row, result.schema, result.refused)
            released.append(
                TaggedOutput(DEAD_LETTERS, fitted) if isinstance(fitted, DeadLetter) else fitted
            )
        return Settled(released, [])

    def _hold(self, key: TableKey, rows: list[TableRow], deadline: float) -> Settled:
        self._held.inc(len(rows))
        with _REGISTRY_LOCK:
            first = (key, deadline) not in _HOLDS_LOGGED
            _HOLDS_LOGGED.add((key, deadline))
        if first:
            _LOG.warning(
                "%s.%s: holding its rows while a worker rewrites it (mark until %s)",
                *key,
                time.strftime("%H:%M:%S", time.gmtime(deadline)),
            )
        return Settled([], rows)

    def _clear(self, dataset: str, table: str) -> None:
        """A mark that cannot be cleared lapses at its deadline: rows wait, none is lost."""
        try:
            self._manager.clear_fence(dataset, table)
        except GoogleAPIError as error:
            Metrics.counter(METRICS_NAMESPACE, "schema_fence_clear_failed").inc()
            _LOG.error(
                "%s.%s: rewrite fence not cleared, it lapses at its deadline: %s",
                dataset,
                table,
                error,
            )


class ApplyChanges(beam.DoFn):
    """(table, rows) -> the table changed once for all of them, rows released; rows of a
    table another worker is rewriting go out as ``FENCED`` to ``HoldWhileFenced``."""

    def __init__(
        self,
        config: WarehouseConfig,
        drain_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._drain = drain_seconds
        self._clock = clock
        self._settle: _Settle | None = None

    def setup(self) -> None:
        self._settle = _Settle(
            worker_manager(self._config),
            self._config.cache_ttl,
            self._drain,
            self._clock,
            time.sleep,
        )

    def process(self, batch: tuple[str, Iterable[TableRow]]) -> Iterator[TableRow | TaggedOutput]:
        assert self._settle is not None
        settled = self._settle(list(batch[1]))
        yield from settled.released
        for row in settled.held:
            yield TaggedOutput(FENCED, (batch[0], row))


class HoldWhileFenced(beam.DoFn):
    """(table, row) held while the table's rewrite mark is live, re-read every
    ``poll_seconds``; then the rows take the schema step again (``_Settle``)."""

    ROWS = userstate.BagStateSpec("rows", PickleCoder())
    ARMED = userstate.ReadModifyWriteStateSpec("armed", BooleanCoder())
    TIMER = userstate.TimerSpec("recheck", TimeDomain.REAL_TIME)

    def __init__(
        self,
        config: WarehouseConfig,
        drain_seconds: float,
        poll_seconds: float = 2.0,
        now: Callable[[], Timestamp] = Timestamp.now,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._drain = drain_seconds
        self._poll = poll_seconds
        self._now = now  # the runner's processing-time clock (a test clock in TestStream)
        self._clock = clock  # wall time, which the marks' deadlines are in
        self._settle: _Settle | None = None

    def setup(self) -> None:
        self._settle = _Settle(
            worker_manager(self._config),
            self._config.cache_ttl,
            self._drain,
            self._clock,
            time.sleep,
        )

    def process(
        self,
        element: tuple[str, TableRow],
        rows=beam.DoFn.StateParam(ROWS),  # noqa: ANN001, B008 - Beam state params
        armed=beam.DoFn.StateParam(ARMED),  # noqa: ANN001, B008
        timer=beam.DoFn.TimerParam(TIMER),  # noqa: ANN001, B008
    ) -> None:
        rows.add(element[1])
        if not armed.read():
            armed.write(True)
            timer.set(self._now() + self._poll)

    @userstate.on_timer(TIMER)
    def recheck(
        self,
        rows=beam.DoFn.StateParam(ROWS),  # noqa: ANN001, B008
        armed=beam.DoFn.StateParam(ARMED),  # noqa: ANN001, B008
        timer=beam.DoFn.TimerParam(TIMER),  # noqa: ANN001, B008
    ) -> Iterator[TableRow | TaggedOutput]:
        assert self._settle is not None
        held = list(rows.read())
        rows.clear()
        if held:
            settled = self._settle(held, fresh=True)
            yield from settled.released
            for row in settled.held:
                rows.add(row)
            if settled.held:
                timer.set(self._now() + self._poll)
                return
        armed.clear()


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

    def __init__(self, delay_seconds: float, now: Callable[[], Timestamp] = Timestamp.now) -> None:
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
