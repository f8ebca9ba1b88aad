"""The BigQuery side of schema contracts: read the live warehouse, apply the safe steps.

Reading turns API objects into the pure dataclasses of ``model`` (types under their
standard SQL names), so checking and planning stay pure and unit-tested.

Applying never trusts a plan made earlier: for each dataset and table it re-reads the
live object, re-plans it (``plan.plan``) and sends only the safe steps:

* a missing dataset or table is created from the contract, with its partitioning,
  partition expiration, clustering, labels (schema version included) and descriptions;
* in-place widenings are DDL (``ALTER COLUMN ... SET DATA TYPE``), run first;
* everything else of a table (new columns, relaxed modes, descriptions, labels,
  partition expiration, clustering) goes in one ``tables.patch`` guarded by the ETag of
  the table as re-read after the DDL; a 412 (someone changed it meanwhile) re-reads,
  re-plans and retries. Column attributes the contract does not model (policy tags,
  default values, precision) are carried over from the live schema, never dropped.

Refused steps are never sent: the emulator would accept some of them silently. After
each update the object is read again, and a sent step whose drift is still there is
reported FAILED, not done (apply then exits 2).

The local emulator (local-bigquery 0.4.0) differs from BigQuery here: it ignores new
nested fields in a schema patch (reported FAILED by that check), refuses NUMERIC ->
BIGNUMERIC (DuckDB's decimal scale; reported FAILED with its error), and stores
partition expiration without enforcing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery

from pipeline.warehouse import identifiers
from pipeline.warehouse.client import (
    RETRY,
    Conflict,
    NotFound,
    PreconditionFailed,
    conflict_backoff,
)
from pipeline.warehouse.contracts.drift import TYPE_DRIFT, diff_dataset_settings, diff_table
from pipeline.warehouse.contracts.model import (
    NULLABLE,
    Contract,
    DatasetContract,
    Field,
    LiveDataset,
    LiveTable,
    Partitioning,
    TableContract,
    Warehouse,
    canonical_type,
)
from pipeline.warehouse.contracts.plan import (
    Step,
    TablePatch,
    dataset_patch,
    plan,
    table_patch,
    widenings,
)

MAX_ATTEMPTS = 3
PROBE_DEADLINE_S = 5.0  # an unreachable endpoint fails the command fast, not after 120 s
_API_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}
INGESTION_TIME = "_PARTITIONTIME"  # how a live ingestion-time partitioning is shown


# --- reading -------------------------------------------------------------------------


def fields_from_api(schema: Sequence[bigquery.SchemaField]) -> tuple[Field, ...]:
    return tuple(
        Field(
            f.name,
            canonical_type(f.field_type) or f.field_type.upper(),
            (f.mode or NULLABLE).upper(),
            f.description,
            fields_from_api(f.fields),
        )
        for f in schema
    )


def live_table(table: bigquery.Table) -> LiveTable:
    partitioning = None
    expiration = None
    if table.time_partitioning is not None:
        tp = table.time_partitioning
        partitioning = Partitioning(tp.field or INGESTION_TIME, tp.type_ or "DAY")
        expiration = tp.expiration_ms
    elif table.range_partitioning is not None:
        partitioning = Partitioning(table.range_partitioning.field, "RANGE")
    return LiveTable(
        fields=fields_from_api(table.schema),
        partitioning=partitioning,
        expiration_ms=expiration,
        clustering=tuple(table.clustering_fields or ()),
        labels=dict(table.labels or {}),
        description=table.description,
    )


def live_dataset(dataset: bigquery.Dataset, tables: dict[str, LiveTable]) -> LiveDataset:
    return LiveDataset(
        location=dataset.location,
        description=dataset.description,
        labels=dict(dataset.labels or {}),
        default_partition_expiration_ms=dataset.default_partition_expiration_ms,
        tables=tables,
    )


def probe(client: bigquery.Client, project: str, dataset: str) -> None:
    """One quick read, so an unreachable endpoint or missing credentials fail in seconds."""
    try:
        client.get_dataset(
            _dataset_ref(project, dataset),
            retry=RETRY.with_deadline(PROBE_DEADLINE_S),
            timeout=PROBE_DEADLINE_S,
        )
    except NotFound:
        pass


def _dataset_ref(project: str, dataset: str) -> str:
    return f"{identifiers.project_id(project)}.{identifiers.dataset_id(dataset)}"


def _table_ref(project: str, dataset: str, table: str) -> str:
    return f"{_dataset_ref(project, dataset)}.{identifiers.table_id(table)}"


def _get_dataset(client: bigquery.Client, project: str, dataset: str) -> bigquery.Dataset | None:
    try:
        return client.get_dataset(_dataset_ref(project, dataset), retry=RETRY)
    except NotFound:
        return None


def _get_table(
    client: bigquery.Client, project: str, dataset: str, table: str
) -> bigquery.Table | None:
    try:
        return client.get_table(_table_ref(project, dataset, table), retry=RETRY)
    except NotFound:
        return None


def read_warehouse(client: bigquery.Client, project: str, contract: Contract) -> Warehouse:
    """The live state of every dataset and table the contract declares (absent: missing)."""
    warehouse: dict[str, LiveDataset] = {}
    for declared in contract.datasets:
        dataset = _get_dataset(client, project, declared.name)
        if dataset is None:
            continue
        tables = {}
        for table in declared.tables:
            live = _get_table(client, project, declared.name, table.name)
            if live is not None:
                tables[table.name] = live_table(live)
        warehouse[declared.name] = live_dataset(dataset, tables)
    return warehouse


# --- what is sent --------------------------------------------------------------------


def field_to_api(column: Field) -> bigquery.SchemaField:
    return bigquery.SchemaField(
        column.name,
        _API_TYPES.get(column.type, column.type),
        mode=column.mode,
        # None is sent as null (no description); the client's annotation leaves it out.
        description=column.description,  # type: ignore[arg-type]
        fields=[field_to_api(f) for f in column.fields],
    )


def merged_api_schema(
    live: Sequence[bigquery.SchemaField], wanted: Sequence[Field]
) -> list[bigquery.SchemaField]:
    """``wanted`` (the live columns edited, then the new ones) as API fields, keeping every
    attribute of a live column the contract does not model (policy tags, defaults...)."""
    current = {f.name.lower(): f for f in live}
    merged = []
    for column in wanted:
        existing = current.get(column.name.lower())
        if existing is None:
            merged.append(field_to_api(column))
            continue
        resource = existing.to_api_repr()
        resource["mode"] = column.mode
        if column.description is not None:
            resource["description"] = column.description
        if existing.fields:
            resource["fields"] = [
                f.to_api_repr() for f in merged_api_schema(existing.fields, column.fields)
            ]
        merged.append(bigquery.SchemaField.from_api_repr(resource))
    return merged


def dataset_spec(project: str, declared: DatasetContract) -> bigquery.Dataset:
    dataset = bigquery.Dataset(_dataset_ref(project, declared.name))
    dataset.location = declared.location
    dataset.description = declared.description
    dataset.labels = dict(declared.labels)
    dataset.default_partition_expiration_ms = declared.default_partition_expiration_ms
    return dataset


def table_spec(project: str, dataset: str, declared: TableContract) -> bigquery.Table:
    table = bigquery.Table(
        _table_ref(project, dataset, declared.name),
        schema=[field_to_api(f) for f in declared.fields],
    )
    if declared.partitioning is not None:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=declared.partitioning.type,
            field=identifiers.column(declared.partitioning.field),
            expiration_ms=declared.expiration_ms,
        )
    if declared.clustering:
        table.clustering_fields = [identifiers.column(c) for c in declared.clustering]
    table.labels = declared.all_labels
    table.description = declared.description
    return table


# --- applying ------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """What apply changed and what BigQuery refused (with its error)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def apply_contract(
    client: bigquery.Client,
    project: str,
    contract: Contract,
    emit: Callable[[str], None] = lambda line: None,
) -> ApplyResult:
    """Make every safe change the contract needs; refused changes are left alone."""
    result = ApplyResult()

    def done(line: str) -> None:
        result.done.append(line)
        emit(f"  done    {line}")

    def failed(line: str) -> None:
        result.failed.append(line)
        emit(f"  FAILED  {line}")

    for declared in contract.datasets:
        if not _apply_dataset(client, project, declared, done, failed):
            continue
        for table in declared.tables:
            _apply_table(client, project, declared.name, table, done, failed)
    return result


def _apply_dataset(
    client: bigquery.Client,
    project: str,
    declared: DatasetContract,
    done: Callable[[str], None],
    failed: Callable[[str], None],
) -> bool:
    """True when the dataset exists afterwards (its tables can be applied)."""
    pauses = conflict_backoff()
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(next(pauses))  # after a 409/412: back off, then re-read
        live = _get_dataset(client, project, declared.name)
        if live is None:
            try:
                client.create_dataset(dataset_spec(project, declared), retry=RETRY)
            except Conflict:
                continue  # created meanwhile: re-read and compare
            except GoogleAPIError as error:
                failed(f"create dataset {declared.name}: {_brief(error)}")
                return False
            done(f"create dataset {declared.name}")
            return True
        steps = _safe_dataset_steps(declared, live)
        patch = dataset_patch(live_dataset(live, {}), steps)
        properties = []
        if patch.description is not None:
            live.description = patch.description
            properties.append("description")
        if patch.labels is not None:
            live.labels = patch.labels
            properties.append("labels")
        if patch.set_expiration:
            live.default_partition_expiration_ms = patch.default_partition_expiration_ms
            properties.append("default_partition_expiration_ms")
        if not properties:
            return True
        try:
            client.update_dataset(live, properties, retry=RETRY)  # guarded by live.etag
        except PreconditionFailed:
            continue
        except GoogleAPIError as error:
            failed(f"update dataset {declared.name}: {_brief(error)}")
            return True
        after = _get_dataset(client, project, declared.name)
        left = _safe_dataset_steps(declared, after) if after is not None else steps
        _verified(steps, left, done, failed)
        return True
    failed(f"dataset {declared.name} kept changing during {MAX_ATTEMPTS} attempts; run apply again")
    return True


def _apply_table(
    client: bigquery.Client,
    project: str,
    dataset: str,
    declared: TableContract,
    done: Callable[[str], None],
    failed: Callable[[str], None],
) -> None:
    name = f"{dataset}.{declared.name}"
    widened: set[str] = set()
    pauses = conflict_backoff()
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(next(pauses))  # after a 409/412: back off, then re-read
        live = _get_table(client, project, dataset, declared.name)
        if live is None:
            try:
                client.create_table(table_spec(project, dataset, declared), retry=RETRY)
            except Conflict:
                continue  # created meanwhile: re-read and compare
            except GoogleAPIError as error:
                failed(f"create table {name}: {_brief(error)}")
                return
            done(f"create table {name}")
            return
        steps = _safe_steps(dataset, declared, live)
        pending = [
            s for s in steps if s.drift.kind == TYPE_DRIFT and s.drift.path[0] not in widened
        ]
        ran = []
        for step in pending:
            column, kind = widenings([step])[0]
            widened.add(column)  # tried once: a refusal is reported, never retried
            if _widen(client, project, dataset, declared.name, column, kind, step, failed):
                ran.append(step)
        if pending:
            live = _get_table(client, project, dataset, declared.name)
            if live is None:
                continue
            steps = _safe_steps(dataset, declared, live)
            _verified(ran, steps, done, failed)
        patch = table_patch(live_table(live), steps)
        if patch.empty:
            return
        _patch_table(live, patch)
        try:
            client.update_table(
                live, _patched_properties(patch), retry=RETRY
            )  # live.etag guards it
        except PreconditionFailed:
            continue  # changed since we read it: re-read, re-plan
        except GoogleAPIError as error:
            failed(f"update table {name}: {_brief(error)}")
            return
        after = _get_table(client, project, dataset, declared.name)
        sent = [s for s in steps if s.drift.kind != TYPE_DRIFT]  # failed widenings: reported
        _verified(sent, _safe_steps(dataset, declared, after) if after else sent, done, failed)
        return
    failed(f"table {name} kept changing during {MAX_ATTEMPTS} attempts; run apply again")


def _verified(
    sent: Sequence[Step],
    left: Sequence[Step],
    done: Callable[[str], None],
    failed: Callable[[str], None],
) -> None:
    """Each sent step is done, or FAILED when the object re-read afterwards still shows its
    drift: a server may accept an update without making it (the emulator ignores new
    nested fields, for one), and apply must not claim what did not happen."""
    remaining = {(s.drift.kind, s.drift.path) for s in left}
    for step in sent:
        if (step.drift.kind, step.drift.path) in remaining:
            failed(f"{step.action}: accepted, but afterwards still {step.drift.describe()}")
        else:
            done(step.action)


def _brief(error: GoogleAPIError) -> str:
    """The first line of BigQuery's error (query errors append location and job id)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _safe_dataset_steps(declared: DatasetContract, live: bigquery.Dataset) -> list[Step]:
    return [s for s in plan(diff_dataset_settings(declared, live_dataset(live, {}))) if s.safe]


def _safe_steps(dataset: str, declared: TableContract, live: bigquery.Table) -> list[Step]:
    return [s for s in plan(diff_table(dataset, declared, live_table(live))) if s.safe]


def _widen(
    client: bigquery.Client,
    project: str,
    dataset: str,
    table: str,
    column: str,
    kind: str,
    step: Step,
    failed: Callable[[str], None],
) -> bool:
    sql = (
        f"ALTER TABLE {identifiers.quoted_table(project, dataset, table)} "
        f"ALTER COLUMN {identifiers.quoted_column(column)} SET DATA TYPE {kind}"
    )
    try:
        client.query(sql, retry=RETRY).result()
    except GoogleAPIError as error:
        failed(f"{step.action}: {_brief(error)}")
        return False
    return True


def _patch_table(live: bigquery.Table, patch: TablePatch) -> None:
    """Set the patch's properties on the table object read last (its ETag guards the update)."""
    if patch.fields is not None:
        live.schema = merged_api_schema(live.schema, patch.fields)
    if patch.labels is not None:
        live.labels = patch.labels
    if patch.description is not None:
        live.description = patch.description
    if patch.set_expiration and live.time_partitioning is not None:
        partitioning = live.time_partitioning
        partitioning.expiration_ms = patch.expiration_ms  # None sends null: no expiration
        live.time_partitioning = partitioning
    if patch.clustering is not None:
        live.clustering_fields = list(patch.clustering) or None


def _patched_properties(patch: TablePatch) -> list[str]:
    properties = []
    if patch.fields is not None:
        properties.append("schema")
    if patch.labels is not None:
        properties.append("labels")
    if patch.description is not None:
        properties.append("description")
    if patch.set_expiration:
        properties.append("time_partitioning")
    if patch.clustering is not None:
        properties.append("clustering_fields")
    return properties
