"""The contract model: the vocabulary (types, modes, limits, retention) and the dataclasses
of declared and live datasets and tables, shared by the loader, the diff and the planner."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


# The specification's versioning columns, without ``_partition_date`` (see the package docstring).
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
    """What BigQuery says about a table (built by ``apply.live_table``)."""

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
