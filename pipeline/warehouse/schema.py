"""Schema model and evolution planner (pure): what a table needs to take new rows.

A table schema here is ``{column: type}`` with the five types of
``transforms.model.infer``; columns of other BigQuery types (NUMERIC, DATE, RECORD,
JSON...) in hand-made tables are kept under their own name and never changed.

Planning follows BigQuery's rules, not the emulator's (which accepts invalid
patches silently): new columns are NULLABLE; INTEGER -> FLOAT is changed in
place (``ALTER COLUMN ... SET DATA TYPE FLOAT64``); anything -> STRING needs a
rewrite of the table; nothing is ever narrowed; at most 10,000 columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.cloud import bigquery

from transforms.model.infer import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    STRING,
    TIMESTAMP,
    TYPES,
    WIDE_INTEGER,
    coerce,
    column_type_of,
    widen,
)

MAX_COLUMNS = 10_000

# API names (legacy and standard SQL) -> the five types of the event model.
_FROM_API = {
    "STRING": STRING,
    "INTEGER": INTEGER,
    "INT64": INTEGER,
    "FLOAT": FLOAT,
    "FLOAT64": FLOAT,
    "BOOLEAN": BOOLEAN,
    "BOOL": BOOLEAN,
    "TIMESTAMP": TIMESTAMP,
}


def from_api(fields: Iterable[bigquery.SchemaField]) -> dict[str, str]:
    """``{column: type}`` of a live table; other types keep their API name."""
    return {f.name: _FROM_API.get(f.field_type, f.field_type) for f in fields}


def to_api(schema: Mapping[str, str]) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(name, column_type_of(kind), mode="NULLABLE")
        for name, kind in schema.items()
    ]


def union(schemas: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The narrowest schema holding every row of ``schemas`` (column by column widening)."""
    merged: dict[str, str] = {}
    for schema in schemas:
        for name, kind in schema.items():
            known = merged.get(name)
            merged[name] = kind if known is None else widen(known, kind)
    return merged


@dataclass(frozen=True)
class SchemaPlan:
    """The changes one table needs; empty when the rows already fit."""

    create: bool = False
    add: dict[str, str] = field(default_factory=dict)
    widen_in_place: dict[str, str] = field(default_factory=dict)  # INTEGER -> FLOAT
    rewrite: dict[str, str] = field(default_factory=dict)  # -> STRING, needs a table rewrite
    refused: dict[str, str] = field(default_factory=dict)  # column -> why

    @property
    def changes(self) -> bool:
        return bool(self.create or self.add or self.widen_in_place or self.rewrite)

    def describe(self) -> str:
        parts = ["create table"] if self.create else []
        parts += [f"add {c} {t}" for c, t in self.add.items()]
        parts += [f"widen {c} to {t} in place" for c, t in self.widen_in_place.items()]
        parts += [f"rewrite {c} as {t}" for c, t in self.rewrite.items()]
        parts += [f"refuse {c}: {why}" for c, why in self.refused.items()]
        return "; ".join(parts) or "no change"


def plan_schema(
    current: Mapping[str, str] | None, wanted: Mapping[str, str], max_columns: int = MAX_COLUMNS
) -> SchemaPlan:
    """What ``current`` (None: no table) needs so rows typed ``wanted`` fit."""
    existing = dict(current or {})
    add: dict[str, str] = {}
    in_place: dict[str, str] = {}
    rewrite: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, kind in wanted.items():
        have = existing.get(name)
        if have is None:
            if len(existing) + len(add) >= max_columns:
                refused[name] = f"the table would pass BigQuery's {max_columns}-column limit"
            else:
                add[name] = column_type_of(kind)
        elif have in TYPES and have != kind:
            if have == INTEGER and kind == WIDE_INTEGER:
                continue  # an INTEGER column holds it exactly
            target = widen(have, kind)
            if target == have:
                continue  # the value is coerced into the wider column
            if have == INTEGER and target == FLOAT:
                in_place[name] = FLOAT
            else:
                rewrite[name] = target
    if current is None:
        return SchemaPlan(create=True, add=add, refused=refused)
    return SchemaPlan(add=add, widen_in_place=in_place, rewrite=rewrite, refused=refused)


def apply_plan(current: Mapping[str, str] | None, plan: SchemaPlan) -> dict[str, str]:
    """The schema ``current`` will have once ``plan`` is applied."""
    result = dict(current or {})
    result.update(plan.widen_in_place)
    result.update(plan.rewrite)
    result.update(plan.add)
    return result


class RowMisfit(ValueError):
    """A row that cannot be stored in its table as the table is."""


def fit_row(
    row: Mapping[str, Any],
    row_schema: Mapping[str, str],
    table: Mapping[str, str],
    originals: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The row with every value coerced to its column's type; raises ``RowMisfit``.

    A timestamp the row holds in canonical form goes into a STRING column as it was
    sent (``originals``): text stays text unless its column is TIMESTAMP."""
    fitted: dict[str, Any] = {}
    for name, value in row.items():
        column_type = table.get(name)
        if column_type is None:
            raise RowMisfit(f"no column {name!r} in the table")
        if column_type == row_schema.get(name) or column_type not in TYPES:
            fitted[name] = value
            continue
        if originals and column_type == STRING and name in originals:
            fitted[name] = originals[name]
            continue
        try:
            fitted[name] = coerce(value, column_type)
        except ValueError as exc:
            raise RowMisfit(f"column {name!r}: {exc}") from exc
    return fitted
