"""The contract file: its structure declared once as pydantic models, read from strict YAML
and translated into the model (``load_contract``, ``parse_contract``, ``contract_from_data``).

Validation runs in two passes, each reporting every problem it finds at once. Pydantic
checks the structure and each value on its own (keys, types, names, modes, labels, schema
versions, retention, the number of clustering columns); ``_problems`` turns its errors into
the messages below, at paths like ``datasets[0].tables[0].fields[1].type``. Only a file
without such problems gets the second pass, the cross-references (duplicate names,
partition and clustering columns, versioning columns, nesting depth, retention against
partitioning): a file with both kinds shows the second kind once the first is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)

from pipeline.warehouse import identifiers
from pipeline.warehouse.contracts.model import (
    CLUSTERING_TYPES,
    MAX_CLUSTERING,
    MAX_NESTING,
    MODES,
    NULLABLE,
    PARTITION_COLUMN_TYPES,
    PARTITION_TYPES,
    REPEATED,
    RESERVED_PREFIXES,
    TYPES,
    VERSION_LABEL,
    VERSIONING_FIELDS,
    Contract,
    DatasetContract,
    Field,
    Partitioning,
    TableContract,
    canonical_type,
    parse_retention,
)

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
MAX_LABELS = 64

Loc = tuple[str | int, ...]  # a place in the file, as pydantic gives it: keys and list indexes


class ContractError(ValueError):
    """A contract file that cannot be used; carries every problem found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


# --- the file's structure ------------------------------------------------------------


class _Invalid(ValueError):
    """Several problems one validator found, each at a place below the value it checked."""

    def __init__(self, *problems: tuple[Loc, str]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _column_name(value: Any) -> str:
    # The reserved prefixes first: their refusal says more than the identifier check's.
    name = value if isinstance(value, str) else ""
    reserved = next((p for p in RESERVED_PREFIXES if name.upper().startswith(p)), None)
    if reserved is None:
        return identifiers.column(value)
    hint = (
        " The partition date of a row is DATE(<partition column>): declare "
        "`partitioning: {field: created_at}` and filter on DATE(created_at)."
        if reserved == "_PARTITION"
        else ""
    )
    raise ValueError(
        f"column name {name!r} starts with {reserved}, which BigQuery reserves (any case) "
        f"and refuses (the emulator would accept it).{hint}"
    )


def _labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of labels, got {_kind(value)}")
    problems: list[tuple[Loc, str]] = []
    labels: dict[str, str] = {}
    for key, text in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            rule = "lowercase letters, digits, _ and -; starts with a letter"
            problems.append(((), f"invalid label key {key!r} ({rule})"))
        elif not isinstance(text, str) or not _LABEL_VALUE.match(text):
            rule = "quoted text of lowercase letters, digits, _ and -"
            problems.append(((key,), f"invalid label value {text!r} ({rule})"))
        elif key == VERSION_LABEL:
            problems.append(((), f"label {VERSION_LABEL!r} is set from schema_version"))
        else:
            labels[key] = text
    if len(value) > MAX_LABELS:
        problems.append(((), f"at most {MAX_LABELS} labels"))
    if problems:
        raise _Invalid(*problems)
    return labels


def _type(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a type name, got {_kind(value)}")
    kind = canonical_type(value)
    if kind is None:
        names = f"{', '.join(TYPES)}, or INTEGER, FLOAT, BOOLEAN, STRUCT"
        raise ValueError(f"unknown type {value!r} (one of {names})")
    return kind


def _one_of(what: str, names: Sequence[str]) -> BeforeValidator:
    """The check of a name among ``names``, in any case (the value is the upper case)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value.upper() not in names:
            raise ValueError(f"unknown {what} {value!r} (one of {', '.join(names)})")
        return value.upper()

    return BeforeValidator(check)


def _clustering(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_CLUSTERING:
        raise ValueError(f"BigQuery clusters by at most {MAX_CLUSTERING} columns, not {len(value)}")
    return value


def _schema_version(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not _VERSION.match(value)):
        raise ValueError(
            f"expected quoted text of letters, digits, '.', '_' or '-' (e.g. '1.1'), got {value!r}"
        )
    return value


def _not_empty(message: str) -> AfterValidator:
    def check(value: list[Any] | None) -> list[Any] | None:
        if not value:
            raise ValueError(message)
        return value

    return AfterValidator(check)


# Each value is checked before its type: a validator sees what the YAML holds.
ColumnName = Annotated[str, BeforeValidator(_column_name)]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]
Retention = Annotated[int | None, BeforeValidator(parse_retention)]  # days


class _Entry(BaseModel):
    """A mapping of the file: unknown keys and values of another type are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FieldEntry(_Entry):
    name: ColumnName
    type: Annotated[str, BeforeValidator(_type)]
    mode: Annotated[str, _one_of("mode", MODES)] = NULLABLE
    description: str | None = None
    fields: list[FieldEntry] | None = None
    renamed_from: ColumnName | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if self.renamed_from is not None and self.renamed_from.lower() == self.name.lower():
            problems.append((("renamed_from",), "is the column's own name"))
        if self.type == "RECORD" and not self.fields:
            problems.append((("fields",), "a RECORD needs a non-empty list of fields"))
        elif self.type != "RECORD" and "fields" in self.model_fields_set:
            problems.append((("fields",), f"only a RECORD has fields, not {self.type!r}"))
        if problems:
            raise _Invalid(*problems)
        return self


class PartitioningEntry(_Entry):
    field: str
    type: Annotated[str, _one_of("partitioning type", PARTITION_TYPES)] = "DAY"


class TableEntry(_Entry):
    name: Annotated[str, BeforeValidator(identifiers.table_id)]
    description: str | None = None
    fields: Annotated[list[FieldEntry] | None, _not_empty("a table needs at least one column")]
    partitioning: PartitioningEntry | None = None
    retention: Retention = None  # null is "none"; absent is the dataset's (model_fields_set)
    clustering: Annotated[list[str] | None, BeforeValidator(_clustering)] = None
    schema_version: Annotated[str | None, BeforeValidator(_schema_version)] = None
    versioning: bool = False
    labels: Labels = {}


class DatasetEntry(_Entry):
    name: Annotated[str, BeforeValidator(identifiers.dataset_id)]
    location: str | None = None
    description: str | None = None
    labels: Labels = {}
    retention: Retention = None
    tables: list[TableEntry] | None = None


class ContractFile(_Entry):
    datasets: Annotated[list[DatasetEntry] | None, _not_empty("declare at least one dataset")]


# --- pydantic's errors as problems ---------------------------------------------------


_EXPECTED = {"model_type": "a mapping", "list_type": "a list", "string_type": "text"}


def _problems(error: ValidationError) -> list[str]:
    """Every error of a validation, as ``path: message`` in the file's own terms."""
    problems: list[str] = []
    for item in error.errors():
        loc, kind, value = tuple(item["loc"]), item["type"], item["input"]
        if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a key that is not text
            allowed = ", ".join(_entry_at(loc[:-1]).model_fields)
            problems.append(_at(loc[:-1], f"unknown key {loc[-1]!r} (allowed: {allowed})"))
        elif kind == "missing":
            problems.append(_at(loc[:-1], f"missing required key {loc[-1]!r}"))
        elif kind in _EXPECTED:
            problems.append(_at(loc, f"expected {_EXPECTED[kind]}, got {_kind(value)}"))
        elif kind == "bool_type":
            problems.append(_at(loc, f"expected true or false, got {value!r}"))
        elif kind == "value_error":  # raised by a validator: its own message
            raised = item.get("ctx", {}).get("error")
            found = raised.problems if isinstance(raised, _Invalid) else (((), str(raised)),)
            problems += [_at(loc + below, message) for below, message in found]
        else:
            problems.append(_at(loc, item["msg"]))
    return problems


def _at(loc: Loc, message: str) -> str:
    path = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" if index else part
        for index, part in enumerate(loc)
    )
    return f"{path}: {message}" if path else message


def _entry_at(loc: Loc) -> type[BaseModel]:
    """The model of the mapping at ``loc`` (list indexes skipped)."""
    entry: type[BaseModel] = ContractFile
    for part in loc:
        if isinstance(part, str):
            entry = _model_in(entry.model_fields[part].annotation) or entry
    return entry


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: ``TableEntry`` of ``list[TableEntry] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, (_model_in(arg) for arg in get_args(annotation))), None)


# --- strict YAML ---------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last)."""


def _construct_mapping(
    loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Hashable, Any]:
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


# --- the cross-references, into the model --------------------------------------------


def contract_from_data(data: Any, source: str = "<contract>") -> Contract:
    """The contract of parsed YAML; raises ``ContractError`` listing every problem."""
    try:
        declared = ContractFile.model_validate(data)
    except ValidationError as error:
        raise ContractError(source, _problems(error)) from error
    problems: list[str] = []
    datasets: list[DatasetContract] = []
    for index, entry in enumerate(declared.datasets or ()):
        path = f"datasets[{index}]"
        dataset = _dataset(entry, path, problems)
        if any(d.name == dataset.name for d in datasets):
            problems.append(f"{path}: duplicate dataset {dataset.name!r}")
            continue
        datasets.append(dataset)
    if problems:
        raise ContractError(source, problems)
    return Contract(tuple(datasets), source)


def _dataset(entry: DatasetEntry, path: str, problems: list[str]) -> DatasetContract:
    tables: list[TableContract] = []
    for index, item in enumerate(entry.tables or ()):
        table = _table(item, f"{path}.tables[{index}]", entry.retention, problems)
        if any(t.name == table.name for t in tables):
            problems.append(f"{path}.tables[{index}]: duplicate table {table.name!r}")
            continue
        tables.append(table)
    return DatasetContract(
        entry.name, tuple(tables), entry.location, entry.description, entry.labels, entry.retention
    )


def _table(
    entry: TableEntry, path: str, dataset_retention: int | None, problems: list[str]
) -> TableContract:
    fields = _fields(entry.fields or (), f"{path}.fields", problems)
    if entry.versioning:
        fields = _with_versioning(fields, f"{path}.versioning", problems)
    by_name = {f.name.lower(): f for f in fields}
    partitioning = _partitioning(entry.partitioning, f"{path}.partitioning", by_name, problems)
    retention = _table_retention(entry, path, partitioning, dataset_retention, problems)
    clustering = _cluster_by(entry.clustering or (), f"{path}.clustering", by_name, problems)
    return TableContract(
        entry.name, fields, entry.description, partitioning, retention, clustering,
        entry.schema_version, entry.labels, entry.versioning,
    )  # fmt: skip


def _fields(
    entries: Sequence[FieldEntry], path: str, problems: list[str], depth: int = 1
) -> tuple[Field, ...]:
    result: list[Field] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        at = f"{path}[{index}]"
        nested: tuple[Field, ...] = ()
        if entry.type == "RECORD" and depth >= MAX_NESTING:
            problems.append(f"{at}: RECORDs nest at most {MAX_NESTING} levels deep")
        elif entry.type == "RECORD":
            nested = _fields(entry.fields or (), f"{at}.fields", problems, depth + 1)
        if entry.name.lower() in seen:
            problems.append(f"{at}: duplicate column {entry.name!r} (BigQuery names ignore case)")
            continue
        seen.add(entry.name.lower())
        result.append(
            Field(entry.name, entry.type, entry.mode, entry.description, nested, entry.renamed_from)
        )
    return tuple(result)


def _with_versioning(
    fields: tuple[Field, ...], path: str, problems: list[str]
) -> tuple[Field, ...]:
    declared = {f.name.lower(): f for f in fields}
    added = []
    for column in VERSIONING_FIELDS:
        own = declared.get(column.name)
        if own is None:
            added.append(column)
        elif own.type != column.type or own.mode == REPEATED:
            problems.append(
                f"{path}: versioning adds {column.name} {column.type}; "
                f"the declared {own.render()} conflicts"
            )
    return fields + tuple(added)


def _partitioning(
    entry: PartitioningEntry | None, path: str, columns: Mapping[str, Field], problems: list[str]
) -> Partitioning | None:
    if entry is None:
        return None
    column, where = columns.get(entry.field.lower()), f"{path}.field"
    if column is None:
        problems.append(f"{where}: partition column {entry.field!r} is not a column of the table")
        return None
    if column.type not in PARTITION_COLUMN_TYPES or column.mode == REPEATED:
        problems.append(
            f"{where}: partition column {column.name!r} is {column.render()}; it must be a "
            "single TIMESTAMP, DATE or DATETIME"
        )
        return None
    if column.type == "DATE" and entry.type == "HOUR":
        problems.append(f"{path}.type: a DATE column ({column.name}) cannot be partitioned by HOUR")
        return None
    return Partitioning(column.name, entry.type)


def _table_retention(
    entry: TableEntry,
    path: str,
    partitioning: Partitioning | None,
    dataset_retention: int | None,
    problems: list[str],
) -> int | None:
    if "retention" not in entry.model_fields_set:
        return dataset_retention if partitioning else None
    own = entry.retention
    if own is not None and partitioning is None:
        problems.append(
            f"{path}.retention: retention expires partitions, and this table is not partitioned "
            "(declare partitioning, or drop retention for a table that keeps its latest rows)"
        )
        return None
    if own is None and partitioning is not None and dataset_retention is not None:
        problems.append(
            f"{path}.retention: 'none' is not possible in a dataset whose retention is "
            f"{dataset_retention} days: BigQuery gives every new partitioned table the "
            "dataset's default partition expiration; give the table a longer retention, or "
            "move the default to the tables"
        )
    return own


def _cluster_by(
    names: Sequence[str], path: str, columns: Mapping[str, Field], problems: list[str]
) -> tuple[str, ...]:
    result: list[str] = []
    for index, name in enumerate(names):
        column, where = columns.get(name.lower()), f"{path}[{index}]"
        if column is None:
            problems.append(f"{where}: clustering column {name!r} is not a column of the table")
        elif column.type not in CLUSTERING_TYPES or column.mode == REPEATED:
            problems.append(
                f"{where}: cannot cluster by {column.render()} (a top-level, non-repeated "
                f"{', '.join(sorted(CLUSTERING_TYPES))})"
            )
        elif column.name in result:
            problems.append(f"{where}: {column.name!r} is listed twice")
        else:
            result.append(column.name)
    return tuple(result)
