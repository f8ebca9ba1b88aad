"""Schema contracts (pure): declared datasets and tables, their drift and a migration plan.

A contract file (YAML, ``templates/contracts/example.yaml``) declares datasets and
their tables: columns (type, mode, description, nested RECORD fields), DAY/HOUR/
MONTH/YEAR partitioning on a TIMESTAMP/DATE/DATETIME column, retention, up to four
clustering columns, labels and a schema version. ``load_contract`` validates it
strictly and reports every problem at once; ``diff`` compares it to the live
warehouse (read by ``contract_apply``) and ``plan`` sorts every drift into a safe
change or a refusal with the reason. Nothing here talks to BigQuery, so every rule
is unit-tested without a server.

Choices (the specification, "Schema Consistency"):

* ``versioning: true`` adds the specification's ``created_at TIMESTAMP``, ``updated_at
  TIMESTAMP`` and ``version STRING`` (NULLABLE, so they can also be added to tables
  that have rows). The specification's fourth column, ``_partition_date DATE``, is *not* a
  column: BigQuery reserves every column name starting with ``_PARTITION`` (any case)
  and refuses the table; the emulator accepts it, so the loader refuses it itself.
  The partition date of a row is ``DATE(<partition column>)``: declare
  ``partitioning: {field: created_at}`` and filter on ``DATE(created_at)``, which
  prunes partitions (the specification's own query does this). Ingestion-time partitioning
  (whose ``_PARTITIONDATE`` pseudo-column would match the name) was rejected: it
  partitions by load time, so a backfill of old rows would land in today's
  partition and outlive its retention.
* Retention is partition expiration. ``7y`` is 7 x 365.25 days rounded up (2557
  days), so N years always covers N calendar years; ``90d`` or ``90`` are days;
  ``none`` (or no retention anywhere) keeps partitions forever. A dataset's
  ``retention`` is its tables' default and also set as the dataset's default
  partition expiration, so tables the pipeline creates there later get it too.
  Because BigQuery gives every new partitioned table of such a dataset that default,
  a partitioned table cannot say ``retention: none`` there (refused at load).
  Retention on an unpartitioned table is refused (there are no partitions to expire);
  "latest only" tables are simply unpartitioned.
* What the contract leaves out is not checked: a description or label it does not
  declare, labels others set (the pipeline's own), tables of its datasets it does
  not list. Extra *columns* of a declared table are drift (dropping them is refused).
* The schema version is the label ``schema_version`` (label values allow only
  ``[a-z0-9_-]``: ``"1.1"`` becomes ``1_1``). It is not the pipeline's
  ``opentrack_schema_version``, a counter the schema manager bumps at each change.
* Safe (applied): create datasets and tables; add NULLABLE/REPEATED columns, also
  inside RECORDs; relax REQUIRED -> NULLABLE; widen a top-level column in place along
  BigQuery's coercions (INT64 -> NUMERIC/BIGNUMERIC/FLOAT64, NUMERIC ->
  BIGNUMERIC/FLOAT64, BIGNUMERIC -> FLOAT64); set retention, clustering, labels and
  descriptions. Refused, with the reason: dropping, renaming, narrowing or any
  other type change, NULLABLE -> REQUIRED, anything to or from REPEATED, adding a
  REQUIRED column to an existing table, changing the partitioning of an existing
  table, moving a dataset. The emulator accepts some of these silently, so the
  planner never leaves them to the server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.warehouse import identifiers

# --- vocabulary ----------------------------------------------------------------------

TYPES = (
    "STRING", "INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE",
    "DATETIME", "TIME", "JSON", "BYTES", "GEOGRAPHY", "RECORD",
)  # fmt: skip
_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}
NULLABLE, REQUIRED, REPEATED = "NULLABLE", "REQUIRED", "REPEATED"
MODES = (NULLABLE, REQUIRED, REPEATED)
PARTITION_TYPES = ("DAY", "HOUR", "MONTH", "YEAR")
PARTITION_COLUMN_TYPES = frozenset({"TIMESTAMP", "DATE", "DATETIME"})
CLUSTERING_TYPES = frozenset(
    {
        "STRING",
        "INT64",
        "NUMERIC",
        "BIGNUMERIC",
        "BOOL",
        "TIMESTAMP",
        "DATE",
        "DATETIME",
        "GEOGRAPHY",
    }
)
MAX_CLUSTERING = 4
MAX_NESTING = 15
# ALTER COLUMN ... SET DATA TYPE accepts exactly BigQuery's coercions.
WIDENINGS = frozenset(
    {
        ("INT64", "NUMERIC"), ("INT64", "BIGNUMERIC"), ("INT64", "FLOAT64"),
        ("NUMERIC", "BIGNUMERIC"), ("NUMERIC", "FLOAT64"), ("BIGNUMERIC", "FLOAT64"),
    }
)  # fmt: skip
RESERVED_PREFIXES = (
    "_PARTITION",
    "_TABLE_",
    "_FILE_",
    "_ROW_TIMESTAMP",
    "__ROOT__",
    "_COLIDENTIFIER",
)
VERSION_LABEL = "schema_version"
DAY_MS = 86_400_000
DAYS_PER_YEAR = 365.25
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
_RETENTION = re.compile(r"^(\d+)\s*([dy])$")


def canonical_type(name: str) -> str | None:
    """Standard SQL name of a type (``INTEGER`` -> ``INT64``); None if unknown."""
    upper = name.upper()
    upper = _ALIASES.get(upper, upper)
    return upper if upper in TYPES else None


def version_label(version: str) -> str:
    """The label value of a schema version: ``"1.1"`` -> ``"1_1"``."""
    return version.lower().replace(".", "_")


# --- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A column, declared or live; ``type`` is always the standard SQL name."""

    name: str
    type: str
    mode: str = NULLABLE
    description: str | None = None
    fields: tuple[Field, ...] = ()
    renamed_from: str | None = None  # contract only: the column's old name

    @property
    def spec(self) -> str:
        """``STRING``, ``RECORD<city STRING, zip INT64 REQUIRED> REPEATED``..."""
        inner = f"<{', '.join(f.render() for f in self.fields)}>" if self.fields else ""
        mode = "" if self.mode == NULLABLE else f" {self.mode}"
        return f"{self.type}{inner}{mode}"

    def render(self) -> str:
        return f"{self.name} {self.spec}"


# The specification's versioning columns, without ``_partition_date`` (see the module docstring).
VERSIONING_FIELDS = (
    Field("created_at", "TIMESTAMP"),
    Field("updated_at", "TIMESTAMP"),
    Field("version", "STRING"),
)


@dataclass(frozen=True)
class Partitioning:
    field: str
    type: str = "DAY"

    def render(self) -> str:
        return f"{self.type}({self.field})"


@dataclass(frozen=True)
class TableContract:
    name: str
    fields: tuple[Field, ...]  # with the versioning columns when ``versioning``
    description: str | None = None
    partitioning: Partitioning | None = None
    retention_days: int | None = None  # effective: the table's own or its dataset's
    clustering: tuple[str, ...] = ()
    schema_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    versioning: bool = False

    @property
    def expiration_ms(self) -> int | None:
        return days_to_ms(self.retention_days) if self.partitioning else None

    @property
    def all_labels(self) -> dict[str, str]:
        """Declared labels plus the schema version label."""
        version = {VERSION_LABEL: version_label(self.schema_version)} if self.schema_version else {}
        return {**self.labels, **version}


@dataclass(frozen=True)
class DatasetContract:
    name: str
    tables: tuple[TableContract, ...] = ()
    location: str | None = None
    description: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    retention_days: int | None = None  # default of its partitioned tables

    @property
    def default_partition_expiration_ms(self) -> int | None:
        return days_to_ms(self.retention_days)


@dataclass(frozen=True)
class Contract:
    datasets: tuple[DatasetContract, ...]
    source: str = "<contract>"


@dataclass(frozen=True)
class LiveTable:
    """What BigQuery says about a table (built by ``contract_apply.live_table``)."""

    fields: tuple[Field, ...]
    partitioning: Partitioning | None = None
    expiration_ms: int | None = None
    clustering: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class LiveDataset:
    location: str | None = None
    description: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    default_partition_expiration_ms: int | None = None
    tables: Mapping[str, LiveTable] = field(default_factory=dict)  # absent: no such table


Warehouse = Mapping[str, LiveDataset]  # absent: no such dataset


def days_to_ms(days: int | None) -> int | None:
    return days * DAY_MS if days else None


def render_days(ms: int | None) -> str:
    if ms is None:
        return "never expire"
    days = ms / DAY_MS
    return f"expire after {int(days) if days == int(days) else days} days"


# --- retention -----------------------------------------------------------------------


def parse_retention(value: Any) -> int | None:
    """Days of a retention (``"7y"``, ``"90d"``, ``90``, ``"none"``/null); raises ValueError.

    Years count 365.25 days, rounded up, so ``7y`` (2557 days) keeps 7 calendar years
    whatever the leap years.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    shape = f"retention must be like '7y', '90d', a number of days or 'none', not {value!r}"
    if isinstance(value, int) and not isinstance(value, bool):
        amount, unit = value, "d"
    else:
        match = _RETENTION.match(value.strip().lower()) if isinstance(value, str) else None
        if not match:
            raise ValueError(shape)
        amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"retention must be positive (or 'none'), not {value!r}")
    return amount if unit == "d" else math.ceil(amount * DAYS_PER_YEAR)


# --- the loader ----------------------------------------------------------------------


class ContractError(ValueError):
    """A contract file that cannot be used; carries every problem found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_contract(path: str | Path) -> Contract:
    """The validated contract of a YAML file; raises ``ContractError``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ContractError(source, [f"cannot read the file: {error}"]) from error
    return parse_contract(text, source)


def parse_contract(text: str, source: str = "<contract>") -> Contract:
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise ContractError(source, [_yaml_problem(error)]) from error
    return contract_from_data(data, source)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line L, column C: problem`` rather than PyYAML's multi-line text."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is None or problem is None:
        return f"not valid YAML: {error}"
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)


def _mapping(
    value: Any, path: str, allowed: Sequence[str], required: Sequence[str], problems: _Problems
) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(path, f"expected a mapping, got {_kind(value)}")
        return None
    for key in value:
        if key not in allowed:
            problems.add(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            problems.add(path, f"missing required key {key!r}")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _text(value: Any, path: str, problems: _Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(path, f"expected text, got {_kind(value)}")
        return None
    return value


def _list(value: Any, path: str, problems: _Problems) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"expected a list, got {_kind(value)}")
        return []
    return value


def _name(check: Callable[[str], str], value: Any, path: str, problems: _Problems) -> str | None:
    try:
        return check(value)
    except identifiers.InvalidIdentifier as error:
        problems.add(path, str(error))
        return None


def _labels(value: Any, path: str, problems: _Problems) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"expected a mapping of labels, got {_kind(value)}")
        return {}
    labels: dict[str, str] = {}
    for key, text in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            problems.add(
                path,
                f"invalid label key {key!r} (lowercase letters, digits, _ and -; starts with a letter)",
            )
        elif not isinstance(text, str) or not _LABEL_VALUE.match(text):
            problems.add(
                f"{path}.{key}",
                f"invalid label value {text!r} (quoted text of lowercase letters, digits, _ and -)",
            )
        elif key == VERSION_LABEL:
            problems.add(path, f"label {VERSION_LABEL!r} is set from schema_version")
        else:
            labels[key] = text
    if len(value) > 64:
        problems.add(path, "at most 64 labels")
    return labels


def _column_name(value: Any, path: str, problems: _Problems) -> str | None:
    # The reserved prefixes first: their refusal says more than the identifier check's.
    name = value if isinstance(value, str) else ""
    reserved = next((p for p in RESERVED_PREFIXES if name.upper().startswith(p)), None)
    if reserved is None:
        return _name(identifiers.column, value, path, problems)
    hint = (
        " The partition date of a row is DATE(<partition column>): declare "
        "`partitioning: {field: created_at}` and filter on DATE(created_at)."
        if reserved == "_PARTITION"
        else ""
    )
    problems.add(
        path,
        f"column name {name!r} starts with {reserved}, which BigQuery reserves (any case) "
        f"and refuses (the emulator would accept it).{hint}",
    )
    return None


_FIELD_KEYS = ("name", "type", "mode", "description", "fields", "renamed_from")


def _field(value: Any, path: str, problems: _Problems, depth: int = 1) -> Field | None:
    data = _mapping(value, path, _FIELD_KEYS, ("name", "type"), problems)
    if data is None:
        return None
    name = _column_name(data.get("name"), f"{path}.name", problems) if "name" in data else None
    kind = None
    if isinstance(data.get("type"), str):
        kind = canonical_type(data["type"])
        if kind is None:
            problems.add(
                f"{path}.type",
                f"unknown type {data['type']!r} (one of {', '.join(TYPES)}, or INTEGER, FLOAT, BOOLEAN, STRUCT)",
            )
    elif "type" in data:
        problems.add(f"{path}.type", f"expected a type name, got {_kind(data['type'])}")
    mode = data.get("mode", NULLABLE)
    if not isinstance(mode, str) or mode.upper() not in MODES:
        problems.add(f"{path}.mode", f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        mode = NULLABLE
    mode = mode.upper()
    description = _text(data.get("description"), f"{path}.description", problems)
    renamed = data.get("renamed_from")
    if renamed is not None:
        renamed = _column_name(renamed, f"{path}.renamed_from", problems)
        if renamed is not None and name is not None and renamed.lower() == name.lower():
            problems.add(f"{path}.renamed_from", "is the column's own name")
    nested: tuple[Field, ...] = ()
    if kind == "RECORD":
        if depth >= MAX_NESTING:
            problems.add(path, f"RECORDs nest at most {MAX_NESTING} levels deep")
        elif not data.get("fields"):
            problems.add(f"{path}.fields", "a RECORD needs a non-empty list of fields")
        else:
            nested = _fields(data["fields"], f"{path}.fields", problems, depth + 1)
    elif "fields" in data:
        problems.add(
            f"{path}.fields", f"only a RECORD has fields, not {kind or data.get('type')!r}"
        )
    if name is None or kind is None:
        return None
    return Field(name, kind, mode, description, nested, renamed)


def _fields(value: Any, path: str, problems: _Problems, depth: int = 1) -> tuple[Field, ...]:
    result: list[Field] = []
    seen: set[str] = set()
    for index, item in enumerate(_list(value, path, problems)):
        column = _field(item, f"{path}[{index}]", problems, depth)
        if column is None:
            continue
        if column.name.lower() in seen:
            problems.add(
                f"{path}[{index}]", f"duplicate column {column.name!r} (BigQuery names ignore case)"
            )
            continue
        seen.add(column.name.lower())
        result.append(column)
    return tuple(result)


def _with_versioning(
    fields: tuple[Field, ...], path: str, problems: _Problems
) -> tuple[Field, ...]:
    declared = {f.name.lower(): f for f in fields}
    added = []
    for column in VERSIONING_FIELDS:
        own = declared.get(column.name)
        if own is None:
            added.append(column)
        elif own.type != column.type or own.mode == REPEATED:
            problems.add(
                path,
                f"versioning adds {column.name} {column.type}; the declared {own.render()} conflicts",
            )
    return fields + tuple(added)


_TABLE_KEYS = (
    "name", "description", "fields", "partitioning", "retention", "clustering",
    "schema_version", "versioning", "labels",
)  # fmt: skip


def _table(
    value: Any, path: str, dataset_retention: int | None, problems: _Problems
) -> TableContract | None:
    data = _mapping(value, path, _TABLE_KEYS, ("name", "fields"), problems)
    if data is None:
        return None
    name = (
        _name(identifiers.table_id, data.get("name"), f"{path}.name", problems)
        if "name" in data
        else None
    )
    fields = _fields(data.get("fields"), f"{path}.fields", problems)
    if "fields" in data and not data.get("fields"):
        problems.add(f"{path}.fields", "a table needs at least one column")
    versioning = data.get("versioning", False)
    if not isinstance(versioning, bool):
        problems.add(f"{path}.versioning", f"expected true or false, got {versioning!r}")
        versioning = False
    if versioning:
        fields = _with_versioning(fields, f"{path}.versioning", problems)
    by_name = {f.name.lower(): f for f in fields}
    partitioning = _partitioning(
        data.get("partitioning"), f"{path}.partitioning", by_name, problems
    )
    retention = _table_retention(data, path, partitioning, dataset_retention, problems)
    clustering = _clustering(data.get("clustering"), f"{path}.clustering", by_name, problems)
    version = data.get("schema_version")
    if version is not None and (not isinstance(version, str) or not _VERSION.match(version)):
        problems.add(
            f"{path}.schema_version",
            f"expected quoted text of letters, digits, '.', '_' or '-' (e.g. '1.1'), got {version!r}",
        )
        version = None
    description = _text(data.get("description"), f"{path}.description", problems)
    labels = _labels(data.get("labels"), f"{path}.labels", problems)
    if name is None:
        return None
    return TableContract(
        name, fields, description, partitioning, retention, clustering, version, labels, versioning
    )


def _partitioning(
    value: Any, path: str, columns: Mapping[str, Field], problems: _Problems
) -> Partitioning | None:
    if value is None:
        return None
    data = _mapping(value, path, ("field", "type"), ("field",), problems)
    if data is None or "field" not in data:
        return None
    kind = data.get("type", "DAY")
    if not isinstance(kind, str) or kind.upper() not in PARTITION_TYPES:
        problems.add(
            f"{path}.type",
            f"unknown partitioning type {kind!r} (one of {', '.join(PARTITION_TYPES)})",
        )
        return None
    kind = kind.upper()
    column = columns.get(str(data["field"]).lower())
    if column is None:
        problems.add(
            f"{path}.field", f"partition column {data['field']!r} is not a column of the table"
        )
        return None
    if column.type not in PARTITION_COLUMN_TYPES or column.mode == REPEATED:
        problems.add(
            f"{path}.field",
            f"partition column {column.name!r} is {column.render()}; it must be a single "
            "TIMESTAMP, DATE or DATETIME",
        )
        return None
    if column.type == "DATE" and kind == "HOUR":
        problems.add(f"{path}.type", f"a DATE column ({column.name}) cannot be partitioned by HOUR")
        return None
    return Partitioning(column.name, kind)


def _table_retention(
    data: Mapping[str, Any],
    path: str,
    partitioning: Partitioning | None,
    dataset_retention: int | None,
    problems: _Problems,
) -> int | None:
    if "retention" not in data:
        return dataset_retention if partitioning else None
    try:
        own = parse_retention(data["retention"])
    except ValueError as error:
        problems.add(f"{path}.retention", str(error))
        return None
    if own is not None and partitioning is None:
        problems.add(
            f"{path}.retention",
            "retention expires partitions, and this table is not partitioned "
            "(declare partitioning, or drop retention for a table that keeps its latest rows)",
        )
        return None
    if own is None and partitioning is not None and dataset_retention is not None:
        problems.add(
            f"{path}.retention",
            f"'none' is not possible in a dataset whose retention is {dataset_retention} days: "
            "BigQuery gives every new partitioned table the dataset's default partition "
            "expiration; give the table a longer retention, or move the default to the tables",
        )
    return own


def _clustering(
    value: Any, path: str, columns: Mapping[str, Field], problems: _Problems
) -> tuple[str, ...]:
    names = _list(value, path, problems)
    if len(names) > MAX_CLUSTERING:
        problems.add(
            path, f"BigQuery clusters by at most {MAX_CLUSTERING} columns, not {len(names)}"
        )
        return ()
    result: list[str] = []
    for index, name in enumerate(names):
        column = columns.get(str(name).lower())
        if column is None:
            problems.add(
                f"{path}[{index}]", f"clustering column {name!r} is not a column of the table"
            )
        elif column.type not in CLUSTERING_TYPES or column.mode == REPEATED:
            problems.add(
                f"{path}[{index}]",
                f"cannot cluster by {column.render()} (a top-level, non-repeated "
                f"{', '.join(sorted(CLUSTERING_TYPES))})",
            )
        elif column.name in result:
            problems.add(f"{path}[{index}]", f"{column.name!r} is listed twice")
        else:
            result.append(column.name)
    return tuple(result)


_DATASET_KEYS = ("name", "location", "description", "labels", "retention", "tables")


def _dataset(value: Any, path: str, problems: _Problems) -> DatasetContract | None:
    data = _mapping(value, path, _DATASET_KEYS, ("name",), problems)
    if data is None:
        return None
    name = (
        _name(identifiers.dataset_id, data.get("name"), f"{path}.name", problems)
        if "name" in data
        else None
    )
    location = _text(data.get("location"), f"{path}.location", problems)
    retention = None
    try:
        retention = parse_retention(data.get("retention"))
    except ValueError as error:
        problems.add(f"{path}.retention", str(error))
    tables: list[TableContract] = []
    for index, item in enumerate(_list(data.get("tables"), f"{path}.tables", problems)):
        table = _table(item, f"{path}.tables[{index}]", retention, problems)
        if table is None:
            continue
        if any(t.name == table.name for t in tables):
            problems.add(f"{path}.tables[{index}]", f"duplicate table {table.name!r}")
            continue
        tables.append(table)
    description = _text(data.get("description"), f"{path}.description", problems)
    labels = _labels(data.get("labels"), f"{path}.labels", problems)
    if name is None:
        return None
    return DatasetContract(name, tuple(tables), location, description, labels, retention)


def contract_from_data(data: Any, source: str = "<contract>") -> Contract:
    """The contract of parsed YAML; raises ``ContractError`` listing every problem."""
    problems = _Problems()
    root = _mapping(data, "", ("datasets",), ("datasets",), problems)
    datasets: list[DatasetContract] = []
    if root is not None:
        items = _list(root.get("datasets"), "datasets", problems)
        if "datasets" in root and not items:
            problems.add("datasets", "declare at least one dataset")
        for index, item in enumerate(items):
            dataset = _dataset(item, f"datasets[{index}]", problems)
            if dataset is None:
                continue
            if any(d.name == dataset.name for d in datasets):
                problems.add(f"datasets[{index}]", f"duplicate dataset {dataset.name!r}")
                continue
            datasets.append(dataset)
    if problems.items:
        raise ContractError(source, problems.items)
    return Contract(tuple(datasets), source)


# --- drift ---------------------------------------------------------------------------

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


def _labels_text(labels: Mapping[str, str | None]) -> str:
    return ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in labels.items())


def _partitioning_text(value: Partitioning | None) -> str:
    return value.render() if value else "not partitioned"


_DESCRIBE: dict[str, Callable[[Drift], str]] = {
    MISSING_DATASET: lambda d: f"dataset {d.dataset} does not exist",
    DATASET_LOCATION: lambda d: f"dataset is in {d.have}, contract says {d.want}",
    DATASET_RETENTION: lambda d: (
        f"default partition expiration: live {render_days(d.have)}, contract {render_days(d.want)}"
    ),
    DATASET_LABELS: lambda d: (
        f"labels: live {_labels_text(d.have)}, contract {_labels_text(d.want)}"
    ),
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
    LABELS_DRIFT: lambda d: f"labels: live {_labels_text(d.have)}, contract {_labels_text(d.want)}",
    DESCRIPTION_DRIFT: lambda d: f"description: live {d.have!r}, contract {d.want!r}",
}


def _label_drift(want: Mapping[str, str], have: Mapping[str, str]) -> tuple[dict, dict] | None:
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


# --- the plan ------------------------------------------------------------------------


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
        parts.append(f"labels {_labels_text(table.all_labels)}")
    return "; ".join(parts)


def _dataset_summary(dataset: DatasetContract) -> str:
    parts = [f"location {dataset.location or '(client default)'}"]
    if dataset.labels:
        parts.append(f"labels {_labels_text(dataset.labels)}")
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
            "(INT64 -> NUMERIC/BIGNUMERIC/FLOAT64, NUMERIC -> BIGNUMERIC/FLOAT64, BIGNUMERIC -> FLOAT64); "
            "it needs a table rewrite converting every value, and readers and writers must change with it"
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
                    "a dataset's location is fixed at creation: copy its tables to a new dataset there")  # fmt: skip
    if kind == DATASET_RETENTION:
        return Step(d, True, f"set the default partition expiration of {target}: partitions {render_days(d.want)}",
                    "applies to tables created from now on; each declared table's own expiration is set separately")  # fmt: skip
    if kind in (DATASET_LABELS, LABELS_DRIFT):
        return Step(d, True, f"set labels {_labels_text(d.want)} on {target}")
    if kind in (DATASET_DESCRIPTION, DESCRIPTION_DRIFT):
        return Step(d, True, f"set the description of {target}")
    if kind == MISSING_TABLE:
        return Step(d, True, f"create table {target} ({_table_summary(d.want)})")
    if kind == MISSING_FIELD:
        return _missing_field_step(d)
    if kind == EXTRA_FIELD:
        return Step(d, False, f"drop column {target} {d.have.spec}",
                    "dropping a column deletes its data in every row and breaks its readers; apply never "
                    "drops: add it to the contract, or drop it by hand after a backup")  # fmt: skip
    if kind == RENAMED_FIELD:
        return Step(d, False, f"rename column {target} to {d.want.name}",
                    "a rename breaks every query and writer using the old name; apply never renames: "
                    "switch them first, then ALTER TABLE ... RENAME COLUMN by hand")  # fmt: skip
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
