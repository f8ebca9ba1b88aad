"""Drift: every difference between a contract and the live warehouse (``diff``), in contract
order, each a ``Drift`` that can describe itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.warehouse.contracts.model import (
    VERSION_LABEL,
    Contract,
    DatasetContract,
    Field,
    LiveDataset,
    LiveTable,
    Partitioning,
    TableContract,
    Warehouse,
    render_days,
    version_label,
)

MISSING_DATASET = "missing dataset"
DATASET_LOCATION = "dataset location drift"
DATASET_RETENTION = "dataset retention drift"
DATASET_LABELS = "dataset labels drift"
DATASET_DESCRIPTION = "dataset description drift"
MISSING_TABLE = "missing table"
MISSING_FIELD = "missing field"
EXTRA_FIELD = "extra field"
RENAMED_FIELD = "renamed field"
TYPE_DRIFT = "type drift"
MODE_DRIFT = "mode drift"
FIELD_DESCRIPTION = "field description drift"
PARTITIONING_DRIFT = "partitioning drift"
RETENTION_DRIFT = "retention drift"
CLUSTERING_DRIFT = "clustering drift"
VERSION_DRIFT = "schema version label drift"
LABELS_DRIFT = "labels drift"
DESCRIPTION_DRIFT = "description drift"


@dataclass(frozen=True)
class Drift:
    """One difference between the contract (``want``) and the warehouse (``have``)."""

    kind: str
    dataset: str
    table: str | None = None
    path: tuple[str, ...] = ()  # column, then nested fields
    want: Any = None
    have: Any = None

    @property
    def target(self) -> str:
        return ".".join([self.dataset] + ([self.table] if self.table else []) + list(self.path))

    @property
    def column(self) -> str:
        return ".".join(self.path)

    def describe(self) -> str:
        return _DESCRIBE[self.kind](self)


def _fields_text(fields: Iterable[str]) -> str:
    return "(" + ", ".join(fields) + ")" if fields else "nothing"


def labels_text(labels: Mapping[str, str | None]) -> str:
    return ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in labels.items())


def _partitioning_text(value: Partitioning | None) -> str:
    return value.render() if value else "not partitioned"


_DESCRIBE: dict[str, Callable[[Drift], str]] = {
    MISSING_DATASET: lambda d: f"dataset {d.dataset} does not exist",
    DATASET_LOCATION: lambda d: f"dataset is in {d.have}, contract says {d.want}",
    DATASET_RETENTION: lambda d: (
        f"default partition expiration: live {render_days(d.have)}, contract {render_days(d.want)}"
    ),
    DATASET_LABELS: lambda d: f"labels: live {labels_text(d.have)}, contract {labels_text(d.want)}",
    DATASET_DESCRIPTION: lambda d: f"description: live {d.have!r}, contract {d.want!r}",
    MISSING_TABLE: lambda d: f"table {d.dataset}.{d.table} does not exist",
    MISSING_FIELD: lambda d: f"column {d.column} ({d.want.spec}) is missing",
    EXTRA_FIELD: lambda d: f"column {d.column} ({d.have.spec}) is not in the contract",
    RENAMED_FIELD: lambda d: (
        f"column {d.have} should be renamed to {d.want.name} (contract: renamed_from)"
    ),
    TYPE_DRIFT: lambda d: f"column {d.column} is {d.have}, contract says {d.want}",
    MODE_DRIFT: lambda d: f"column {d.column} is {d.have}, contract says {d.want}",
    FIELD_DESCRIPTION: lambda d: (
        f"column {d.column} description: live {d.have!r}, contract {d.want!r}"
    ),
    PARTITIONING_DRIFT: lambda d: (
        f"partitioning: live {_partitioning_text(d.have)}, contract {_partitioning_text(d.want)}"
    ),
    RETENTION_DRIFT: lambda d: (
        f"partitions: live {render_days(d.have)}, contract {render_days(d.want)}"
    ),
    CLUSTERING_DRIFT: lambda d: (
        f"clustering: live {_fields_text(d.have)}, contract {_fields_text(d.want)}"
    ),
    VERSION_DRIFT: lambda d: (
        f"label {VERSION_LABEL}: live {d.have or '(unset)'}, contract {d.want}"
    ),
    LABELS_DRIFT: lambda d: f"labels: live {labels_text(d.have)}, contract {labels_text(d.want)}",
    DESCRIPTION_DRIFT: lambda d: f"description: live {d.have!r}, contract {d.want!r}",
}


def _label_drift(
    want: Mapping[str, str], have: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str | None]] | None:
    """Declared labels that differ (labels the contract does not name are not drift)."""
    keys = [k for k, v in want.items() if have.get(k) != v]
    if not keys:
        return None
    return {k: want[k] for k in keys}, {k: have.get(k) for k in keys}


def diff_dataset(contract: DatasetContract, live: LiveDataset | None) -> list[Drift]:
    """Drifts of a dataset and of every table it declares."""
    if live is None:
        return [Drift(MISSING_DATASET, contract.name, want=contract)] + [
            Drift(MISSING_TABLE, contract.name, table.name, want=table) for table in contract.tables
        ]
    drifts = diff_dataset_settings(contract, live)
    for table in contract.tables:
        drifts += diff_table(contract.name, table, live.tables.get(table.name))
    return drifts


def diff_dataset_settings(contract: DatasetContract, live: LiveDataset) -> list[Drift]:
    """Drifts of an existing dataset's own settings (location, retention, labels, description)."""
    name = contract.name
    drifts = []
    if contract.location and (live.location or "").upper() != contract.location.upper():
        drifts.append(Drift(DATASET_LOCATION, name, want=contract.location, have=live.location))
    if live.default_partition_expiration_ms != contract.default_partition_expiration_ms:
        drifts.append(
            Drift(DATASET_RETENTION, name, want=contract.default_partition_expiration_ms,
                  have=live.default_partition_expiration_ms)
        )  # fmt: skip
    labels = _label_drift(contract.labels, live.labels)
    if labels:
        drifts.append(Drift(DATASET_LABELS, name, want=labels[0], have=labels[1]))
    if contract.description is not None and live.description != contract.description:
        drifts.append(
            Drift(DATASET_DESCRIPTION, name, want=contract.description, have=live.description)
        )
    return drifts


def diff_table(dataset: str, contract: TableContract, live: LiveTable | None) -> list[Drift]:
    """Drifts of one table; a missing table is one drift."""
    name = contract.name
    if live is None:
        return [Drift(MISSING_TABLE, dataset, name, want=contract)]

    def drift(kind: str, want: Any, have: Any) -> Drift:
        return Drift(kind, dataset, name, want=want, have=have)

    drifts = _diff_fields(dataset, name, contract.fields, live.fields, ())
    if live.partitioning != contract.partitioning:
        drifts.append(drift(PARTITIONING_DRIFT, contract.partitioning, live.partitioning))
    both_partitioned = live.partitioning is not None and contract.partitioning is not None
    if both_partitioned and live.expiration_ms != contract.expiration_ms:
        drifts.append(drift(RETENTION_DRIFT, contract.expiration_ms, live.expiration_ms))
    if tuple(live.clustering) != contract.clustering:
        drifts.append(drift(CLUSTERING_DRIFT, contract.clustering, tuple(live.clustering)))
    if contract.schema_version is not None:
        wanted = version_label(contract.schema_version)
        if live.labels.get(VERSION_LABEL) != wanted:
            drifts.append(drift(VERSION_DRIFT, wanted, live.labels.get(VERSION_LABEL)))
    labels = _label_drift(contract.labels, live.labels)
    if labels:
        drifts.append(drift(LABELS_DRIFT, labels[0], labels[1]))
    if contract.description is not None and live.description != contract.description:
        drifts.append(drift(DESCRIPTION_DRIFT, contract.description, live.description))
    return drifts


def _diff_fields(
    dataset: str, table: str, want: Sequence[Field], have: Sequence[Field], prefix: tuple[str, ...]
) -> list[Drift]:
    live = {f.name.lower(): f for f in have}
    claimed: set[str] = set()
    drifts: list[Drift] = []

    def drift(kind: str, path: tuple[str, ...], wanted: Any, had: Any) -> None:
        drifts.append(Drift(kind, dataset, table, path, wanted, had))

    for column in want:
        path = prefix + (column.name,)
        current = live.get(column.name.lower())
        if current is None:
            old = column.renamed_from and live.get(column.renamed_from.lower())
            if old:
                claimed.add(old.name.lower())
                drift(RENAMED_FIELD, prefix + (old.name,), column, old.name)
            else:
                drift(MISSING_FIELD, path, column, None)
            continue
        claimed.add(current.name.lower())
        if current.type != column.type:
            drift(TYPE_DRIFT, path, column.type, current.type)
        elif column.type == "RECORD":
            drifts += _diff_fields(dataset, table, column.fields, current.fields, path)
        if current.mode != column.mode:
            drift(MODE_DRIFT, path, column.mode, current.mode)
        if column.description is not None and current.description != column.description:
            drift(FIELD_DESCRIPTION, path, column.description, current.description)
    for column in have:
        if column.name.lower() not in claimed:
            drift(EXTRA_FIELD, prefix + (column.name,), None, column)
    return drifts


def diff(contract: Contract, warehouse: Warehouse) -> list[Drift]:
    """Every drift of the warehouse from the contract, in contract order."""
    drifts: list[Drift] = []
    for dataset in contract.datasets:
        drifts += diff_dataset(dataset, warehouse.get(dataset.name))
    return drifts
