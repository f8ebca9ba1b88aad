"""BigQuery type inference per value, the widening lattice, and coercion.

Rules: the type comes from the value itself.
bool -> BOOLEAN (checked before int: ``bool`` is an ``int`` in Python),
int -> INTEGER; an int FLOAT64 cannot hold exactly (beyond +-2**53) is marked
``WIDE_INTEGER`` (an INTEGER column all the same, but one that may not widen to
FLOAT: with floats it becomes STRING, digits kept); an int beyond INT64 (up to
2**64 - 1, which the JSON parser still returns as an int) -> STRING of its digits;
float -> FLOAT,
a string with an ISO-8601 date *and* time -> TIMESTAMP (written in canonical
UTC form), any other string -> STRING, arrays (and objects reached inside
them) -> STRING holding compact JSON. ``None`` gives no column.

Widening: INTEGER -> FLOAT -> STRING; BOOLEAN and TIMESTAMP -> STRING; an integer
beyond +-2**53 and a float -> STRING. A value meeting a wider column is coerced to
it, never rejected, and never stored inexactly.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from transforms.model.timestamps import canonical_timestamp

BOOLEAN: Final = "BOOLEAN"
INTEGER: Final = "INTEGER"
FLOAT: Final = "FLOAT"
TIMESTAMP: Final = "TIMESTAMP"
STRING: Final = "STRING"
TYPES: Final = (BOOLEAN, INTEGER, FLOAT, TIMESTAMP, STRING)
# Not a column type: the row-schema mark of an integer FLOAT64 cannot hold exactly. Its
# column is INTEGER; with FLOAT values beside it, it becomes STRING.
WIDE_INTEGER: Final = "INTEGER_BEYOND_FLOAT64"
FLOAT64_EXACT: Final = 2**53  # every integer up to this magnitude is a double exactly

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# How far a type may widen without a rewrite of its values.
_WIDER: Final = {
    (INTEGER, FLOAT): FLOAT,
    (FLOAT, INTEGER): FLOAT,
    (INTEGER, WIDE_INTEGER): WIDE_INTEGER,
    (WIDE_INTEGER, INTEGER): WIDE_INTEGER,
}

JsonScalar = bool | int | float | str


def json_text(value: Any) -> str:
    """Compact JSON (arrays and objects stored as STRING columns)."""
    return orjson.dumps(value).decode()


def _float_value(value: float) -> float | str:
    # Non-finite floats never come from strict JSON; BigQuery takes them as text.
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def infer(value: Any) -> tuple[str, JsonScalar] | None:
    """(BigQuery type, value ready for that type) of one leaf value, None for null."""
    kind = type(value)
    if kind is str:
        stamp = canonical_timestamp(value)
        if stamp is not None:
            return TIMESTAMP, stamp
        return STRING, value
    if kind is bool:
        return BOOLEAN, value
    if kind is int:
        if -FLOAT64_EXACT <= value <= FLOAT64_EXACT:
            return INTEGER, value
        if INT64_MIN <= value <= INT64_MAX:
            return WIDE_INTEGER, value
        return STRING, str(value)
    if kind is float:
        return FLOAT, _float_value(value)
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict)):
        return STRING, json_text(value)
    # Subclasses of the JSON types (never produced by the parser).
    if isinstance(value, str):
        return infer(str(value))
    if isinstance(value, bool):
        return BOOLEAN, bool(value)
    if isinstance(value, int):
        return infer(int(value))
    if isinstance(value, float):
        return infer(float(value))
    return STRING, str(value)


def column_type_of(kind: str) -> str:
    """The column type of a row-schema type: ``WIDE_INTEGER`` is an INTEGER column."""
    return INTEGER if kind == WIDE_INTEGER else kind


def widen(current: str, incoming: str) -> str:
    """The narrowest type holding values of both types (the lattice join)."""
    if current == incoming:
        return current
    return _WIDER.get((current, incoming), STRING)


def needs_rewrite(current: str, wider: str) -> bool:
    """True when BigQuery cannot change ``current`` to ``wider`` in place."""
    return current != wider and not (current == INTEGER and wider == FLOAT)


def coerce(value: JsonScalar, column_type: str) -> JsonScalar:
    """Convert an inferred value to a column of the same or a wider type.

    Raises ``ValueError`` if ``column_type`` is narrower than the value's type;
    the schema manager widens the column first in that case.
    """
    if column_type == STRING:
        if type(value) is str:
            return value
        if type(value) is bool:
            return "true" if value else "false"
        return json_text(value) if isinstance(value, (list, dict)) else str(value)
    if column_type == FLOAT and type(value) is int:
        if not -FLOAT64_EXACT <= value <= FLOAT64_EXACT:
            raise ValueError(f"FLOAT64 cannot hold {value} exactly")
        return float(value)
    inferred = infer(value)
    if inferred is None or column_type_of(inferred[0]) != column_type:
        raise ValueError(f"cannot store {type(value).__name__} in a {column_type} column")
    return inferred[1]
