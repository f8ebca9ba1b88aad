"""The schema manager: datasets, tables and columns created and widened on demand.

``ensure(dataset, table, wanted)`` returns a schema the rows typed ``wanted``
fit into, changing the warehouse only when they do not:

* schemas are cached for ``cache_ttl`` seconds (5 minutes by default); a
  row that fits the cached schema costs no API call at all;
* otherwise the table is re-read, the changes are planned
  (``warehouse.schema.plan_schema``) and applied together: one create, or one
  schema patch guarded by the table's ETag (retried on 412), plus
  ``ALTER COLUMN ... SET DATA TYPE FLOAT64`` for INTEGER -> FLOAT (only when
  the column holds no integer beyond +-2**53, which FLOAT64 would round: such a
  column is rewritten as STRING instead, digits kept), plus a
  rewrite (``CREATE OR REPLACE TABLE ... AS SELECT``) that keeps partitioning,
  clustering, labels, description and partition expiration for -> STRING;
* never more than 5 metadata updates per table in 10 s (BigQuery's limit);
* after every create or change of an event table its dedup view
  ``<table>_view`` is (re-)created (``warehouse.views``);
* columns BigQuery would refuse are reported in ``SchemaResult.refused``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from apache_beam.metrics import Metrics
from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery

from pipeline.warehouse import fence, identifiers, views
from pipeline.warehouse.client import (
    RETRY,
    Conflict,
    NotFound,
    PreconditionFailed,
    conflict_backoff,
)
from pipeline.warehouse.schema import (
    MAX_COLUMNS,
    SchemaPlan,
    apply_plan,
    from_api,
    plan_schema,
    to_api,
)
from transforms.model.infer import FLOAT64_EXACT, STRING, TIMESTAMP
from transforms.model.naming import DEAD_LETTER_TABLE

_LOG = logging.getLogger(__name__)
SCHEMA_VERSION_LABEL = "opentrack_schema_version"
UPDATES_PER_WINDOW = 5
UPDATE_WINDOW_SECONDS = 10.0
MAX_ATTEMPTS = 6
STATE_TABLES = frozenset({"users"})  # one row per key: not partitioned by time


@dataclass(frozen=True)
class TableSettings:
    """How new datasets and tables are made (from the pipeline options)."""

    location: str | None = None
    partition_field: str = "timestamp"
    clustering_fields: tuple[str, ...] = ()
    partition_expiration_days: int | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: {"managed_by": "opentrack"})
    # Retention in days declared by a contract (--contracts): "dataset.table" for a
    # table, "dataset" for the default of a dataset's tables; None there means never.
    retention_days: Mapping[str, int | None] = field(default_factory=dict)

    def partition_field_for(self, table: str, schema: Mapping[str, str]) -> str | None:
        if table in STATE_TABLES:
            return None
        candidate = "received_at" if table == DEAD_LETTER_TABLE else self.partition_field
        return candidate if schema.get(candidate) == TIMESTAMP else None

    def expiration_ms(self, dataset: str = "", table: str = "") -> int | None:
        """Partition expiration of a new table: the contract's retention for it or its
        dataset, else --partition_expiration_days, else none."""
        for key in (f"{dataset}.{table}", dataset):
            if key in self.retention_days:
                days = self.retention_days[key]
                break
        else:
            days = self.partition_expiration_days
        return days * 86_400_000 if days else None


@dataclass(frozen=True)
class SchemaResult:
    schema: dict[str, str]
    refused: dict[str, str]
    changed: bool


class _UpdateRate:
    """Sleeps so that no table sees more than 5 metadata updates per 10 s."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self._recent: dict[str, deque[float]] = {}
        self._sleep = sleep
        self._clock = clock

    def wait(self, table_key: str) -> None:
        recent = self._recent.setdefault(table_key, deque(maxlen=UPDATES_PER_WINDOW))
        if len(recent) == UPDATES_PER_WINDOW:
            pause = recent[0] + UPDATE_WINDOW_SECONDS - self._clock()
            if pause > 0:
                self._sleep(pause)
        recent.append(self._clock())


class SchemaManager:
    """Owns every dataset/table/schema change; one per worker (it is thread-safe).

    Each table has its own lock, so threads working on different tables (a batch's
    schema step ensures a bundle's tables side by side) do not wait for each other,
    while two changes of one table never interleave."""

    def __init__(
        self,
        client: bigquery.Client,
        project: str,
        settings: TableSettings | None = None,
        cache_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_columns: int = MAX_COLUMNS,
    ) -> None:
        self._client = client
        self._project = identifiers.project_id(project)
        self._settings = settings or TableSettings()
        self._ttl = cache_ttl
        self._clock = clock
        self._max_columns = max_columns
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}
        self._datasets: set[str] = set()
        self._rate = _UpdateRate(sleep, clock)
        self._sleep = sleep
        self._lock = threading.Lock()  # the shared maps: cache, table locks, call counts
        self._table_locks: dict[tuple[str, str], threading.RLock] = {}
        self._fences: dict[tuple[str, str], float] = {}  # rewrite marks as last read
        self._dataset_lock = threading.Lock()
        self.api_calls: Counter[str] = Counter()

    # -- reading -----------------------------------------------------------------

    def _count(self, call: str) -> None:
        with self._lock:
            self.api_calls[call] += 1
        Metrics.counter("opentrack", f"bigquery_schema_call_{call}").inc()

    def _ref(self, dataset: str, table: str) -> str:
        identifiers.dataset_id(dataset)
        identifiers.table_id(table)
        return f"{self._project}.{dataset}.{table}"

    def _fetch(self, dataset: str, table: str) -> bigquery.Table | None:
        self._count("get_table")
        try:
            live = self._client.get_table(self._ref(dataset, table), retry=RETRY)
        except NotFound:
            live = None
        deadline = fence.deadline_of(live.labels) if live is not None else None
        with self._lock:
            if deadline is None:
                self._fences.pop((dataset, table), None)
            else:
                self._fences[(dataset, table)] = deadline
        return live

    def _table_lock(self, dataset: str, table: str) -> threading.RLock:
        with self._lock:
            return self._table_locks.setdefault((dataset, table), threading.RLock())

    def _remember(self, dataset: str, table: str, schema: dict[str, str] | None) -> None:
        with self._lock:
            self._cache[(dataset, table)] = (self._clock(), schema)

    def _fresh(self, dataset: str, table: str) -> tuple[bool, dict[str, str] | None]:
        with self._lock:
            entry = self._cache.get((dataset, table))
        if entry is not None and self._clock() - entry[0] < self._ttl:
            return True, entry[1]
        return False, None

    def cached_schema(self, dataset: str, table: str) -> dict[str, str] | None:
        """The schema as last seen if younger than the TTL, else read afresh."""
        with self._table_lock(dataset, table):
            fresh, schema = self._fresh(dataset, table)
            if fresh:
                return schema
            live = self._fetch(dataset, table)
            schema = from_api(live.schema) if live is not None else None
            self._remember(dataset, table, schema)
            return schema

    def peek(self, dataset: str, table: str) -> dict[str, str] | None:
        """The cached schema if still fresh; never an API call (the streaming hot path)."""
        return self._fresh(dataset, table)[1]

    def fence_deadline(self, dataset: str, table: str) -> float | None:
        """The table's rewrite mark as last read (``warehouse.fence``); never an API call."""
        with self._lock:
            return self._fences.get((dataset, table))

    def read_fence(self, dataset: str, table: str) -> float | None:
        """The table's rewrite mark as of now (one read, which also refreshes the cache)."""
        with self._table_lock(dataset, table):
            live = self._fetch(dataset, table)
            self._remember(dataset, table, from_api(live.schema) if live is not None else None)
        return self.fence_deadline(dataset, table)

    def mark_fence(self, dataset: str, table: str, deadline: float) -> float | None:
        """Mark the table for a rewrite until ``deadline``: None when the mark is ours,
        else the deadline of the live mark another worker holds."""
        self._count("mark_fence")
        held = fence.mark(self._client, self._ref(dataset, table), deadline, sleep=self._sleep)
        with self._lock:
            self._fences[(dataset, table)] = deadline if held is None else held
        return held

    def clear_fence(self, dataset: str, table: str) -> None:
        self._count("clear_fence")
        fence.clear(self._client, self._ref(dataset, table), sleep=self._sleep)
        with self._lock:
            self._fences.pop((dataset, table), None)

    def exact_plan(self, dataset: str, table: str, wanted: Mapping[str, str]) -> SchemaPlan:
        """The plan ``ensure`` would apply now (fresh read; in-place INTEGER -> FLOAT of
        a column holding inexact integers already turned into a STRING rewrite)."""
        with self._table_lock(dataset, table):
            live = self._fetch(dataset, table)
            current = from_api(live.schema) if live is not None else None
            self._remember(dataset, table, current)
            return self._exact(dataset, table, plan_schema(current, wanted, self._max_columns))

    def known_schemas(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every cached table schema (for the side input of the streaming path)."""
        with self._lock:
            return {key: schema for key, (_, schema) in self._cache.items() if schema is not None}

    # -- changing ----------------------------------------------------------------

    def ensure(self, dataset: str, table: str, wanted: Mapping[str, str]) -> SchemaResult:
        """A schema that rows typed ``wanted`` fit, changing the table if needed."""
        with self._table_lock(dataset, table):
            fresh, cached = self._fresh(dataset, table)
            if fresh and cached is not None:
                plan = plan_schema(cached, wanted, self._max_columns)
                if not plan.changes:
                    return SchemaResult(cached, plan.refused, changed=False)
            raced = False
            pauses = conflict_backoff()
            for attempt in range(1, MAX_ATTEMPTS + 1):
                live = self._fetch(dataset, table)
                current = from_api(live.schema) if live is not None else None
                plan = self._exact(dataset, table, plan_schema(current, wanted, self._max_columns))
                try:
                    if plan.changes:
                        _LOG.info("%s.%s: %s", dataset, table, plan.describe())
                        self._apply(dataset, table, live, plan)
                    schema = apply_plan(current, plan)
                    if plan.changes or raced:
                        # After a race the change may be ours, its answer lost on the way
                        # back (a create met with 409): the view must follow it all the same.
                        self._refresh_view(dataset, table, schema)
                    self._remember(dataset, table, schema)
                    return SchemaResult(schema, plan.refused, changed=plan.changes)
                except (PreconditionFailed, Conflict) as race:
                    # Another worker changed the table first: re-read and re-plan.
                    raced = True
                    _LOG.info(
                        "%s.%s changed under us (%s), attempt %d",
                        dataset, table, race.code, attempt,
                    )  # fmt: skip
                    if attempt < MAX_ATTEMPTS:
                        self._count("conflict_retry")
                        pause = next(pauses)
                        Metrics.counter("opentrack", "bigquery_schema_conflict_backoff_ms").inc(
                            round(pause * 1000)
                        )
                        self._sleep(pause)
            raise RuntimeError(
                f"{dataset}.{table}: schema still racing after {MAX_ATTEMPTS} attempts"
            )

    def _exact(self, dataset: str, table: str, plan: SchemaPlan) -> SchemaPlan:
        """``plan`` with each in-place INTEGER -> FLOAT of a column holding an integer
        FLOAT64 cannot represent exactly turned into a rewrite as STRING."""
        if not plan.widen_in_place:
            return plan
        columns = list(plan.widen_in_place)
        counts = ", ".join(
            f"COUNTIF({identifiers.quoted_column(name)} NOT BETWEEN -@exact AND @exact)"
            f" AS {identifiers.quoted_column(name)}"
            for name in columns
        )
        self._count("exactness_check")
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("exact", "INT64", FLOAT64_EXACT)]
        )
        sql = f"SELECT {counts} FROM {identifiers.quoted_table(self._project, dataset, table)}"
        (found,) = list(self._client.query(sql, job_config=config, retry=RETRY).result())
        inexact = [name for name in columns if found[name]]
        if not inexact:
            return plan
        for name in inexact:
            _LOG.warning(
                "%s.%s.%s holds %d integers FLOAT64 would round: widened to STRING instead",
                dataset, table, name, found[name],
            )  # fmt: skip
            self._count("widened_to_string_for_exactness")
        return replace(
            plan,
            widen_in_place={c: t for c, t in plan.widen_in_place.items() if c not in inexact},
            rewrite={**plan.rewrite, **{name: STRING for name in inexact}},
        )

    def ensure_dataset(self, dataset: str) -> None:
        with self._dataset_lock:
            if dataset in self._datasets:
                return
            spec = bigquery.Dataset(f"{self._project}.{identifiers.dataset_id(dataset)}")
            spec.location = self._settings.location
            spec.labels = dict(self._settings.labels)
            spec.description = (
                f"Segment-compatible event tables of source {dataset}, managed by OpenTrack-Beam."
            )
            self._count("create_dataset")
            self._client.create_dataset(spec, exists_ok=True, retry=RETRY)
            self._datasets.add(dataset)

    def _apply(
        self, dataset: str, table: str, live: bigquery.Table | None, plan: SchemaPlan
    ) -> None:
        key = f"{dataset}.{table}"
        if plan.create:
            self.ensure_dataset(dataset)
            self._rate.wait(key)
            self._create(dataset, table, plan.add)
            return
        assert live is not None
        version = _next_version(live)
        if plan.rewrite:
            self._rate.wait(key)
            self._rewrite(dataset, table, live, plan.rewrite, version)
            live = self._fetch(dataset, table)
            assert live is not None
        for name in plan.widen_in_place:
            self._rate.wait(key)
            self._query(
                f"ALTER TABLE {identifiers.quoted_table(self._project, dataset, table)} "
                f"ALTER COLUMN {identifiers.quoted_column(name)} SET DATA TYPE FLOAT64"
            )
        if plan.widen_in_place:
            live = self._fetch(dataset, table)
            assert live is not None
        if plan.add or plan.widen_in_place:
            # One ETag-guarded patch: new columns and the schema version together.
            self._rate.wait(key)
            live.schema = list(live.schema) + to_api(plan.add)
            live.labels = {**(live.labels or {}), SCHEMA_VERSION_LABEL: str(version)}
            self._count("update_table")
            self._client.update_table(live, ["schema", "labels"], retry=RETRY)

    def _create(self, dataset: str, table: str, schema: Mapping[str, str]) -> None:
        for name in schema:
            identifiers.column(name)
        spec = bigquery.Table(self._ref(dataset, table), schema=to_api(schema))
        partition = self._settings.partition_field_for(table, schema)
        if partition:
            spec.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY,
                field=partition,
                expiration_ms=self._settings.expiration_ms(dataset, table),
            )
        clustering = [c for c in self._settings.clustering_fields if c in schema]
        if clustering:
            spec.clustering_fields = clustering[:4]
        spec.labels = {**self._settings.labels, SCHEMA_VERSION_LABEL: "1"}
        spec.description = f"Segment-compatible table {table}, managed by OpenTrack-Beam."
        self._count("create_table")
        self._client.create_table(spec, retry=RETRY)

    def _rewrite(
        self,
        dataset: str,
        table: str,
        live: bigquery.Table,
        columns: Mapping[str, str],
        version: int,
    ) -> None:
        """Widen columns to STRING by rewriting the table in place, keeping its settings.

        Batch runs call this before any row is written; streaming fences the
        table's writes around it.
        """
        target = identifiers.quoted_table(self._project, dataset, table)
        current = from_api(live.schema)
        replaced = ", ".join(
            f"{_as_string(identifiers.quoted_column(name), current[name])} "
            f"AS {identifiers.quoted_column(name)}"
            for name in columns
        )
        clauses = []
        if live.time_partitioning and live.time_partitioning.field:
            column = identifiers.quoted_column(live.time_partitioning.field)
            clauses.append(f"PARTITION BY TIMESTAMP_TRUNC({column}, DAY)")
        if live.clustering_fields:
            clauses.append(
                "CLUSTER BY "
                + ", ".join(identifiers.quoted_column(c) for c in live.clustering_fields)
            )
        labels = {**(live.labels or {}), SCHEMA_VERSION_LABEL: str(version)}
        options = ", ".join(f'("{_label(k)}", "{_label(v)}")' for k, v in labels.items())
        clauses.append(f"OPTIONS(labels=[{options}])")
        self._query(
            f"CREATE OR REPLACE TABLE {target} {' '.join(clauses)} "
            f"AS SELECT * REPLACE ({replaced}) FROM {target}"
        )
        # Restore what CREATE OR REPLACE may not carry over (description, expiration).
        rewritten = self._fetch(dataset, table)
        assert rewritten is not None
        rewritten.description = live.description
        fields = ["description"]
        if live.time_partitioning and rewritten.time_partitioning:
            rewritten.time_partitioning = live.time_partitioning
            fields.append("time_partitioning")
        self._count("update_table")
        self._client.update_table(rewritten, fields, retry=RETRY)

    def _refresh_view(self, dataset: str, table: str, schema: Mapping[str, str]) -> None:
        """Keep ``<table>_view`` in step with the table; a failure is logged, never
        raised: the table change and the rows matter more than the view."""
        if not views.is_event_table(table) or not views.can_dedup(schema):
            return
        self._count("create_view")
        try:
            views.create_dedup_view(self._client, self._project, dataset, table)
        except GoogleAPIError as error:
            self._count("create_view_failed")
            _LOG.error("%s.%s: dedup view not refreshed: %s", dataset, table, error)

    def _query(self, sql: str) -> None:
        self._count("query")
        self._client.query(sql, retry=RETRY).result()


def _next_version(live: bigquery.Table) -> int:
    try:
        return int((live.labels or {}).get(SCHEMA_VERSION_LABEL, "1")) + 1
    except ValueError:
        return 2


def _label(text: str) -> str:
    """Label keys/values are [a-z0-9_-]; anything else must not reach the SQL."""
    if not all(c.islower() or c.isdigit() or c in "_-" for c in text) or len(text) > 63:
        raise identifiers.InvalidIdentifier(f"invalid label {text[:80]!r}")
    return text


def _as_string(quoted: str, kind: str) -> str:
    """SQL turning a column of ``kind`` into the text the pipeline writes for it."""
    if kind == TIMESTAMP:
        return f"FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6SZ', {quoted}, 'UTC')"
    if kind == "BOOLEAN":
        return f"IF({quoted}, 'true', 'false')"
    return f"CAST({quoted} AS STRING)"
