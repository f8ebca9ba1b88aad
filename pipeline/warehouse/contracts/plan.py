"""The plan: a safe change or a refusal with its reason for every drift (``step_for``,
``plan``), and the patches apply sends for the safe ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pipeline.warehouse.contracts.drift import (
    CLUSTERING_DRIFT,
    DATASET_DESCRIPTION,
    DATASET_LABELS,
    DATASET_LOCATION,
    DATASET_RETENTION,
    DESCRIPTION_DRIFT,
    EXTRA_FIELD,
    FIELD_DESCRIPTION,
    LABELS_DRIFT,
    MISSING_DATASET,
    MISSING_FIELD,
    MISSING_TABLE,
    MODE_DRIFT,
    PARTITIONING_DRIFT,
    RENAMED_FIELD,
    RETENTION_DRIFT,
    TYPE_DRIFT,
    VERSION_DRIFT,
    Drift,
    labels_text,
)
from pipeline.warehouse.contracts.model import (
    NULLABLE,
    REQUIRED,
    VERSION_LABEL,
    WIDENINGS,
    DatasetContract,
    Field,
    LiveDataset,
    LiveTable,
    TableContract,
    render_days,
)


@dataclass(frozen=True)
class Step:
    """What apply does about one drift (``safe``), or why it refuses to."""

    drift: Drift
    safe: bool
    action: str
    why: str = ""

    def render(self) -> str:
        if self.safe:
            return self.action + (f" ({self.why})" if self.why else "")
        return f"REFUSED {self.action}: {self.why}"


def _requires(column: Field) -> str | None:
    """The first REQUIRED column in ``column`` (itself or nested), if any."""
    if column.mode == REQUIRED:
        return column.name
    for inner in column.fields:
        found = _requires(inner)
        if found:
            return f"{column.name}.{found}"
    return None


def _table_summary(table: TableContract) -> str:
    parts = [f"{len(table.fields)} columns"]
    if table.partitioning:
        parts.append(f"partitioned by {table.partitioning.render()}")
        parts.append(f"partitions {render_days(table.expiration_ms)}")
    if table.clustering:
        parts.append(f"clustered by {', '.join(table.clustering)}")
    if table.all_labels:
        parts.append(f"labels {labels_text(table.all_labels)}")
    return "; ".join(parts)


def _dataset_summary(dataset: DatasetContract) -> str:
    parts = [f"location {dataset.location or '(client default)'}"]
    if dataset.labels:
        parts.append(f"labels {labels_text(dataset.labels)}")
    parts.append(f"default partitions {render_days(dataset.default_partition_expiration_ms)}")
    return "; ".join(parts)


def _type_step(d: Drift) -> Step:
    where = f"{d.target}"
    change = f"change column {where} from {d.have} to {d.want}"
    if (d.have, d.want) in WIDENINGS:
        if len(d.path) > 1:
            return Step(
                d,
                False,
                change,
                "BigQuery changes the type of a nested field only by rewriting the table",
            )
        return Step(
            d,
            True,
            f"widen column {where} from {d.have} to {d.want} in place (ALTER COLUMN SET DATA TYPE)",
        )
    if (d.want, d.have) in WIDENINGS:
        why = (
            f"narrowing {d.have} to {d.want} could fail or lose precision on existing values; "
            "BigQuery does not narrow in place (rewrite the table with a checked CAST by hand)"
        )
    else:
        why = (
            f"{d.have} -> {d.want} is not one of BigQuery's in-place widenings "
            "(INT64 -> NUMERIC/BIGNUMERIC/FLOAT64, NUMERIC -> BIGNUMERIC/FLOAT64, "
            "BIGNUMERIC -> FLOAT64); it needs a table rewrite converting every value, and "
            "readers and writers must change with it"
        )
    return Step(d, False, change, why)


def _mode_step(d: Drift) -> Step:
    change = f"change column {d.target} from {d.have} to {d.want}"
    if (d.have, d.want) == (REQUIRED, NULLABLE):
        return Step(d, True, f"relax column {d.target} from REQUIRED to NULLABLE")
    if d.want == REQUIRED:
        why = (
            "BigQuery never tightens a mode to REQUIRED: rows already stored may hold NULL "
            "(keep it NULLABLE and enforce it in the writers)"
        )
    else:
        why = "changing to or from REPEATED changes the column's shape; it needs a table rewrite"
    return Step(d, False, change, why)


def _missing_field_step(d: Drift) -> Step:
    column: Field = d.want
    required = _requires(column)
    action = f"add column {d.target} {column.spec}"
    if required:
        return Step(
            d,
            False,
            action,
            f"{required} is REQUIRED: the table's existing rows have no value for it, so BigQuery "
            "refuses to add it; declare it NULLABLE (add it, backfill, enforce it in the writers)",
        )
    return Step(d, True, action)


def _partitioning_step(d: Drift) -> Step:
    if d.have is None:
        action = f"partition {d.dataset}.{d.table} by {d.want.render()}"
    elif d.want is None:
        action = f"remove the partitioning {d.have.render()} of {d.dataset}.{d.table}"
    else:
        action = f"re-partition {d.dataset}.{d.table} from {d.have.render()} to {d.want.render()}"
    return Step(
        d,
        False,
        action,
        "the partitioning of an existing table cannot change: it needs a rewrite into a new "
        "table (CREATE TABLE ... PARTITION BY ... AS SELECT, then swap names), planned by hand",
    )


def step_for(d: Drift) -> Step:
    """The safe change for a drift, or the refusal and why (pure; see ``plan``)."""
    kind, target = d.kind, d.target
    if kind == MISSING_DATASET:
        return Step(d, True, f"create dataset {target} ({_dataset_summary(d.want)})")
    if kind == DATASET_LOCATION:
        return Step(d, False, f"move dataset {target} from {d.have} to {d.want}",
                    "a dataset's location is fixed at creation: copy its tables to a new "
                    "dataset there")  # fmt: skip
    if kind == DATASET_RETENTION:
        return Step(d, True, f"set the default partition expiration of {target}: "
                    f"partitions {render_days(d.want)}",
                    "applies to tables created from now on; each declared table's own "
                    "expiration is set separately")  # fmt: skip
    if kind in (DATASET_LABELS, LABELS_DRIFT):
        return Step(d, True, f"set labels {labels_text(d.want)} on {target}")
    if kind in (DATASET_DESCRIPTION, DESCRIPTION_DRIFT):
        return Step(d, True, f"set the description of {target}")
    if kind == MISSING_TABLE:
        return Step(d, True, f"create table {target} ({_table_summary(d.want)})")
    if kind == MISSING_FIELD:
        return _missing_field_step(d)
    if kind == EXTRA_FIELD:
        return Step(d, False, f"drop column {target} {d.have.spec}",
                    "dropping a column deletes its data in every row and breaks its readers; "
                    "apply never drops: add it to the contract, or drop it by hand after a "
                    "backup")  # fmt: skip
    if kind == RENAMED_FIELD:
        return Step(d, False, f"rename column {target} to {d.want.name}",
                    "a rename breaks every query and writer using the old name; apply never "
                    "renames: switch them first, then ALTER TABLE ... RENAME COLUMN "
                    "by hand")  # fmt: skip
    if kind == TYPE_DRIFT:
        return _type_step(d)
    if kind == MODE_DRIFT:
        return _mode_step(d)
    if kind == FIELD_DESCRIPTION:
        return Step(d, True, f"set the description of column {target}")
    if kind == PARTITIONING_DRIFT:
        return _partitioning_step(d)
    if kind == RETENTION_DRIFT:
        return Step(
            d, True, f"set the partition expiration of {target}: partitions {render_days(d.want)}"
        )
    if kind == CLUSTERING_DRIFT:
        action = (
            f"cluster {target} by {', '.join(d.want)}"
            if d.want
            else f"remove the clustering of {target}"
        )
        return Step(
            d, True, action, "applies to rows written from now on; older rows keep their layout"
        )
    if kind == VERSION_DRIFT:
        return Step(d, True, f"set label {VERSION_LABEL}={d.want} on {target}")
    raise ValueError(f"unknown drift kind {kind!r}")


def plan(drifts: Sequence[Drift]) -> tuple[Step, ...]:
    """One step per drift, safe or refused, in the order apply would take them.

    Clustering is refused when one of its columns will still be missing after the
    safe changes (BigQuery cannot cluster by a column the table lacks).
    """
    steps = [step_for(d) for d in drifts]
    refused_columns = {
        (s.drift.dataset, s.drift.table, s.drift.path[0].lower())
        for s in steps
        if s.drift.kind in (MISSING_FIELD, RENAMED_FIELD) and len(s.drift.path) == 1 and not s.safe
    }
    for index, step in enumerate(steps):
        d = step.drift
        if d.kind == CLUSTERING_DRIFT:
            missing = [c for c in d.want if (d.dataset, d.table, c.lower()) in refused_columns]
            if missing:
                steps[index] = Step(
                    d,
                    False,
                    step.action,
                    f"column {', '.join(missing)} is not in the table and cannot be added safely",
                )
    return tuple(steps)


def has_refusals(steps: Iterable[Step]) -> bool:
    return any(not step.safe for step in steps)


# --- what apply sends ----------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPatch:
    """Dataset properties to update (None: unchanged)."""

    description: str | None = None
    labels: dict[str, str] | None = None
    set_expiration: bool = False
    default_partition_expiration_ms: int | None = None


@dataclass(frozen=True)
class TablePatch:
    """One ETag-guarded table update: the properties to send (None: unchanged)."""

    fields: tuple[Field, ...] | None = None
    labels: dict[str, str] | None = None
    description: str | None = None
    set_expiration: bool = False
    expiration_ms: int | None = None
    clustering: tuple[str, ...] | None = None  # () removes it

    @property
    def empty(self) -> bool:
        return self == TablePatch()


_SCHEMA_KINDS = frozenset({MISSING_FIELD, MODE_DRIFT, FIELD_DESCRIPTION})


def dataset_patch(live: LiveDataset, steps: Iterable[Step]) -> DatasetPatch:
    patch = DatasetPatch()
    for step in steps:
        d = step.drift
        if not step.safe or d.table is not None:
            continue
        if d.kind == DATASET_DESCRIPTION:
            patch = replace(patch, description=d.want)
        elif d.kind == DATASET_LABELS:
            patch = replace(patch, labels={**live.labels, **(patch.labels or {}), **d.want})
        elif d.kind == DATASET_RETENTION:
            patch = replace(patch, set_expiration=True, default_partition_expiration_ms=d.want)
    return patch


def widenings(steps: Iterable[Step]) -> list[tuple[str, str]]:
    """``(column, type)`` of the safe in-place widenings (top-level columns only)."""
    return [(s.drift.path[0], s.drift.want) for s in steps if s.safe and s.drift.kind == TYPE_DRIFT]


def table_patch(live: LiveTable, steps: Iterable[Step]) -> TablePatch:
    """The update carrying the safe steps of one existing table (widenings excluded:
    they are DDL, run before the patch)."""
    safe = [s for s in steps if s.safe]
    patch = TablePatch()
    fields = live.fields
    for step in safe:
        d = step.drift
        if d.kind in _SCHEMA_KINDS:
            fields = _edit_fields(fields, d)
        elif d.kind in (LABELS_DRIFT, VERSION_DRIFT):
            wanted = d.want if d.kind == LABELS_DRIFT else {VERSION_LABEL: d.want}
            patch = replace(patch, labels={**live.labels, **(patch.labels or {}), **wanted})
        elif d.kind == DESCRIPTION_DRIFT:
            patch = replace(patch, description=d.want)
        elif d.kind == RETENTION_DRIFT:
            patch = replace(patch, set_expiration=True, expiration_ms=d.want)
        elif d.kind == CLUSTERING_DRIFT:
            patch = replace(patch, clustering=tuple(d.want))
    if fields != live.fields:
        patch = replace(patch, fields=fields)
    return patch


def _edit_fields(fields: tuple[Field, ...], d: Drift) -> tuple[Field, ...]:
    """``fields`` with one safe schema drift resolved at ``d.path``."""
    return _edit(fields, d.path, d)


def _edit(fields: tuple[Field, ...], path: tuple[str, ...], d: Drift) -> tuple[Field, ...]:
    head, rest = path[0], path[1:]
    if not rest and d.kind == MISSING_FIELD:
        added: Field = d.want
        return fields + (_strip(added),)
    result = []
    for column in fields:
        if column.name.lower() != head.lower():
            result.append(column)
        elif rest:
            result.append(replace(column, fields=_edit(column.fields, rest, d)))
        elif d.kind == MODE_DRIFT:
            result.append(replace(column, mode=d.want))
        else:  # FIELD_DESCRIPTION
            result.append(replace(column, description=d.want))
    return tuple(result)


def _strip(column: Field) -> Field:
    """A contract column as sent to BigQuery (no contract-only attributes)."""
    return replace(column, renamed_from=None, fields=tuple(_strip(f) for f in column.fields))
