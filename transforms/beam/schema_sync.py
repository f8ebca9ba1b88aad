"""The schema step of a batch run: every table's union schema applied before any write.

Rows are keyed by destination table and their schemas merged (column by
column widening); ``ApplySchemas`` makes each table fit its union once (one
``SchemaManager.ensure`` per table, so API calls grow with tables and changes,
never with events). ``FitRows`` reads the final schemas as a side input, so
no row is written before its table is ready, and coerces every value to its
column's type; a row that still does not fit becomes a dead letter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SchemaManager, SchemaResult
from pipeline.warehouse.schema import RowMisfit, fit_row, union
from transforms.beam.bundle_threads import map_in_bundle
from transforms.beam.event_model import DEAD_LETTERS, METRICS_NAMESPACE
from transforms.model.deadletter import DeadLetter, EventRejected, Reason, Stage, make_dead_letter
from transforms.model.infer import widen
from transforms.model.normalize import TableRow

TableKey = tuple[str, str]  # (dataset, table)
# Tables ensured at once. Measured on the emulator, 18 tables: reads 3.6 s one by one,
# 2.2 s two at a time, 2.0 s four at a time; creations no faster and, four at a time,
# slower (it serialises DDL); BigQuery itself takes more.
SCHEMA_CONCURRENCY = 2
# One counter per dataset a batch run writes (its tables, by name): how ``opentrack run``
# knows which datasets to summarise.
DATASETS_NAMESPACE = "opentrack.datasets"


def table_schema_of(row: TableRow) -> tuple[TableKey, Mapping[str, str]]:
    return (row.dataset, row.table), row.schema


class UnionSchemas(beam.CombineFn):
    """Per table: the narrowest schema that holds all of its rows."""

    def create_accumulator(self) -> dict[str, str]:
        return {}

    def add_input(self, accumulator: dict[str, str], schema: Mapping[str, str]) -> dict[str, str]:
        for name, kind in schema.items():
            known = accumulator.get(name)
            if known is None:
                accumulator[name] = kind
            elif known != kind:
                accumulator[name] = widen(known, kind)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict[str, str]]) -> dict[str, str]:
        return union(accumulators)

    def extract_output(self, accumulator: dict[str, str]) -> dict[str, str]:
        return accumulator


class ApplySchemas(beam.DoFn):
    """(table, union schema) -> (table, (final schema, refused columns)).

    A bundle's tables are ensured side by side at its end, ``SCHEMA_CONCURRENCY`` at a
    time (the manager locks per table)."""

    def __init__(self, config: WarehouseConfig) -> None:
        self._config = config
        self._manager: SchemaManager | None = None
        self._pending: list[tuple[TableKey, dict[str, str]]] = []

    def setup(self) -> None:
        self._manager = self._config.manager()

    def start_bundle(self) -> None:
        self._pending = []

    def process(self, element: tuple[TableKey, dict[str, str]]) -> None:
        self._pending.append(element)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        pending, self._pending = self._pending, []
        for key, result in map_in_bundle(self._ensure, pending, SCHEMA_CONCURRENCY):
            Metrics.counter(DATASETS_NAMESPACE, key[0]).inc()  # the run's summary reads them
            if result.changed:
                Metrics.counter(METRICS_NAMESPACE, "schema_tables_changed").inc()
            yield GlobalWindows.windowed_value((key, (result.schema, result.refused)))

    def _ensure(self, element: tuple[TableKey, dict[str, str]]) -> tuple[TableKey, SchemaResult]:
        (dataset, table), wanted = element
        assert self._manager is not None, "set up"
        return (dataset, table), self._manager.ensure(dataset, table, wanted)


def misfit_dead_letter(row: TableRow, reason: Reason, detail: str) -> DeadLetter:
    """The event of a row that does not fit its table (the row itself when it is not an
    event's), with the table and why."""
    return make_dead_letter(
        Stage.SCHEMA,
        EventRejected(reason, f"{row.dataset}.{row.table}: {detail}"),
        row.event if row.event is not None else orjson.dumps(row.row),
        source=row.dataset,
        received_at=row.row.get("received_at"),
        message_id=row.row.get("id") if row.table != "users" else None,
    )


def fit_to_table(
    row: TableRow, table_schema: Mapping[str, str], refused: Mapping[str, str]
) -> TableRow | DeadLetter:
    """The row coerced to its table's schema, or the dead letter saying why it cannot be."""
    over_limit = [name for name in row.row if name in refused]
    if over_limit:
        detail = f"{len(over_limit)} columns refused: {refused[over_limit[0]]}"
        return misfit_dead_letter(row, Reason.COLUMN_LIMIT, detail)
    try:
        fitted = fit_row(row.row, row.schema, table_schema, row.originals)
    except RowMisfit as misfit:
        return misfit_dead_letter(row, Reason.SCHEMA_MISMATCH, str(misfit))
    return TableRow(row.dataset, row.table, fitted, row.schema, row.event)


class FitRows(beam.DoFn):
    """Coerce each row to its table's final schema; misfits become dead letters."""

    def __init__(self) -> None:
        self._fitted = Metrics.counter(METRICS_NAMESPACE, "schema_rows_fitted")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "schema_dead_letters")

    def process(
        self, row: TableRow, schemas: Mapping[TableKey, tuple[dict[str, str], dict[str, str]]]
    ) -> Iterator[TableRow | TaggedOutput]:
        result = fit_to_table(row, *schemas[(row.dataset, row.table)])
        if isinstance(result, DeadLetter):
            self._dead.inc()
            yield TaggedOutput(DEAD_LETTERS, result)
        else:
            self._fitted.inc()
            yield result
