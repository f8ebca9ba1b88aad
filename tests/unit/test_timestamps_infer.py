"""Golden tests for transforms.model.timestamps and transforms.model.infer.

Expectations come from the module docstrings and the README's schema rules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.warehouse.schema import fit_row, plan_schema, to_api, union
from transforms.model import timestamps
from transforms.model.infer import coerce, infer, needs_rewrite, widen
from transforms.model.timestamps import (
    TimestampError,
    canonical_timestamp,
    format_timestamp,
    parse_timestamp,
)

S, I, F, B, T = "STRING", "INTEGER", "FLOAT", "BOOLEAN", "TIMESTAMP"
W = "INTEGER_BEYOND_FLOAT64"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --------------------------------------------------------------------------- parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-05-01T12:00:00Z", utc(2024, 5, 1, 12), id="zulu"),
        pytest.param("2024-05-01T14:00:00+02:00", utc(2024, 5, 1, 12), id="positive-offset"),
        pytest.param("2024-05-01T07:00:00-05:00", utc(2024, 5, 1, 12), id="negative-offset"),
        pytest.param(
            "2024-05-01T00:30:00+01:00", utc(2024, 4, 30, 23, 30), id="offset-crosses-day"
        ),
        pytest.param("2024-05-01 12:00:00Z", utc(2024, 5, 1, 12), id="space-separator"),
        pytest.param("2024-05-01T12:00:00", utc(2024, 5, 1, 12), id="offset-less-is-utc"),
        pytest.param("2024-05-01T12:00", utc(2024, 5, 1, 12), id="no-seconds"),
        pytest.param("2024-05-01T12:00:00.5Z", utc(2024, 5, 1, 12, 0, 0, 500000), id="tenths"),
        pytest.param("2024-05-01T12:00:00.123456Z", utc(2024, 5, 1, 12, 0, 0, 123456), id="micros"),
        pytest.param(
            "2024-05-01T12:00:00.123456789Z",
            utc(2024, 5, 1, 12, 0, 0, 123456),
            id="nanos-truncated-not-rounded",
        ),
        pytest.param("2024-01-31", utc(2024, 1, 31), id="bare-date-midnight-utc"),
        pytest.param("1969-07-20T20:17:40Z", utc(1969, 7, 20, 20, 17, 40), id="pre-1970"),
        pytest.param("0001-01-01T00:00:00Z", utc(1, 1, 1), id="year-1"),
        pytest.param(
            "9999-12-31T23:59:59.999999Z", utc(9999, 12, 31, 23, 59, 59, 999999), id="year-9999"
        ),
    ],
)
def test_parse_timestamp_accepts(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1700000000, id="int-epoch"),
        pytest.param(1700000000.5, id="float-epoch"),
        pytest.param("1700000000", id="epoch-as-text"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="free-text"),
        pytest.param("the day after tomorrow at noon", id="long-free-text"),
        pytest.param("2024-05-01T24:00:00Z", id="hour-24"),
        pytest.param("2024-13-01T00:00:00Z", id="month-13"),
        pytest.param("2024-02-30T00:00:00Z", id="february-30"),
        pytest.param("0000-01-01T00:00:00Z", id="year-0"),
        pytest.param("9999-12-31T23:00:00-05:00", id="offset-past-year-9999"),
        pytest.param("0001-01-01T00:30:00+01:00", id="offset-before-year-1"),
    ],
)
def test_parse_timestamp_rejects(value: Any) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)


def test_timestamp_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("nope, not a time")


# --------------------------------------------------------------------------- format / canonical


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(utc(2024, 5, 1, 12), "2024-05-01T12:00:00.000000Z", id="whole-seconds"),
        pytest.param(
            utc(2024, 5, 1, 12, 0, 0, 120), "2024-05-01T12:00:00.000120Z", id="micros-padded"
        ),
        pytest.param(utc(1, 1, 1), "0001-01-01T00:00:00.000000Z", id="year-0001"),
        pytest.param(
            utc(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59.999999Z", id="year-9999"
        ),
        pytest.param(utc(1969, 7, 20, 20, 17, 40), "1969-07-20T20:17:40.000000Z", id="pre-1970"),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00.000000Z",
            id="offset-converted-to-utc",
        ),
        pytest.param(
            datetime(2024, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2025-01-01T01:00:00.000000Z",
            id="offset-crosses-year",
        ),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


def test_format_timestamp_day_cache_stays_bounded_and_right() -> None:
    """Hostile input can bring any number of distinct days: the remembered date texts
    stay under their limit and every text stays exact across the clears."""
    start = utc(1990, 1, 1, 6, 7, 8, 9)
    for offset in range(timestamps._DAY_TEXT_LIMIT + 50):
        moment = start + timedelta(days=offset)
        assert format_timestamp(moment) == moment.strftime("%Y-%m-%dT06:07:08.000009Z")
    assert len(timestamps._DAY_TEXT) <= timestamps._DAY_TEXT_LIMIT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-01-31", None, id="bare-date-is-not-a-timestamp"),
        pytest.param("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00.000000Z", id="offset"),
        pytest.param("2024-05-01 12:00", "2024-05-01T12:00:00.000000Z", id="space-no-seconds"),
        pytest.param("2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123456Z", id="nanos"),
        pytest.param("2024-05-01T12:00:00.000000Z", "2024-05-01T12:00:00.000000Z", id="canonical"),
        pytest.param("2024-05-01T25:00:00Z", None, id="hour-25"),
        pytest.param("hello world, 12:34", None, id="free-text"),
        pytest.param("1234-56-78T90:12", None, id="timestamp-shaped-garbage"),
        pytest.param("", None, id="empty"),
    ],
)
def test_canonical_timestamp(text: str, expected: str | None) -> None:
    assert canonical_timestamp(text) == expected


def test_equal_instants_have_equal_canonical_text() -> None:
    forms = [
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01 07:00:00-05:00",
        "2024-05-01T12:00:00.000Z",
    ]
    assert {canonical_timestamp(text) for text in forms} == {"2024-05-01T12:00:00.000000Z"}


# --------------------------------------------------------------------------- infer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, (B, True), id="true-is-boolean-not-integer"),
        pytest.param(False, (B, False), id="false-is-boolean-not-integer"),
        pytest.param(0, (I, 0), id="zero"),
        pytest.param(42, (I, 42), id="int"),
        pytest.param(2**53, (I, 2**53), id="largest-exact-in-float64"),
        pytest.param(-(2**53) - 1, (W, -(2**53) - 1), id="past-float64-exact-marked"),
        pytest.param(2**63 - 1, (W, 2**63 - 1), id="int64-max"),
        pytest.param(-(2**63), (W, -(2**63)), id="int64-min"),
        pytest.param(2**63, (S, "9223372036854775808"), id="over-int64-keeps-its-digits"),
        pytest.param(-(2**63) - 1, (S, "-9223372036854775809"), id="under-int64-keeps-its-digits"),
        pytest.param(1.5, (F, 1.5), id="float"),
        pytest.param(2.0, (F, 2.0), id="integral-float"),
        pytest.param(
            "2024-05-01T14:00:00+02:00", (T, "2024-05-01T12:00:00.000000Z"), id="iso-timestamp"
        ),
        pytest.param("2024-01-31", (S, "2024-01-31"), id="bare-date-is-string"),
        pytest.param("hello", (S, "hello"), id="string"),
        pytest.param("", (S, ""), id="empty-string"),
        pytest.param("1700000000", (S, "1700000000"), id="numeric-string"),
        pytest.param([1, "a", None], (S, '[1,"a",null]'), id="list-json"),
        pytest.param({"a": 1, "b": [True]}, (S, '{"a":1,"b":[true]}'), id="dict-json"),
        pytest.param([], (S, "[]"), id="empty-list"),
    ],
)
def test_infer(value: Any, expected: tuple[str, Any]) -> None:
    got = infer(value)
    assert got == expected
    assert type(got[1]) is type(expected[1])


def test_infer_none_gives_no_column() -> None:
    assert infer(None) is None


# --------------------------------------------------------------------------- widen


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        pytest.param(I, F, F, id="int+float"),
        pytest.param(F, I, F, id="float+int"),
        pytest.param(I, S, S, id="int+string"),
        pytest.param(F, S, S, id="float+string"),
        pytest.param(B, I, S, id="bool+int"),
        pytest.param(I, B, S, id="int+bool"),
        pytest.param(B, F, S, id="bool+float"),
        pytest.param(T, S, S, id="timestamp+string"),
        pytest.param(S, T, S, id="string+timestamp"),
        pytest.param(T, I, S, id="timestamp+int"),
        pytest.param(B, T, S, id="bool+timestamp"),
        *[pytest.param(t, t, t, id=f"same-{t.lower()}") for t in (B, I, F, T, S)],
    ],
)
def test_widen(current: str, incoming: str, expected: str) -> None:
    assert widen(current, incoming) == expected


@pytest.mark.parametrize(
    ("current", "wider", "expected"),
    [
        pytest.param(I, F, False, id="int-to-float-in-place"),
        pytest.param(I, I, False, id="unchanged-int"),
        pytest.param(S, S, False, id="unchanged-string"),
        pytest.param(I, S, True, id="int-to-string"),
        pytest.param(F, S, True, id="float-to-string"),
        pytest.param(B, S, True, id="bool-to-string"),
        pytest.param(T, S, True, id="timestamp-to-string"),
    ],
)
def test_needs_rewrite(current: str, wider: str, expected: bool) -> None:
    assert needs_rewrite(current, wider) is expected


# --------------------------------------------------------------------------- coerce


@pytest.mark.parametrize(
    ("value", "column_type", "expected"),
    [
        pytest.param(3, F, 3.0, id="int-into-float"),
        pytest.param(True, S, "true", id="true-into-string"),
        pytest.param(False, S, "false", id="false-into-string"),
        pytest.param(7, S, "7", id="int-into-string"),
        pytest.param(1.5, S, "1.5", id="float-into-string"),
        pytest.param(
            "2024-05-01T12:00:00.000000Z",
            S,
            "2024-05-01T12:00:00.000000Z",
            id="timestamp-text-into-string",
        ),
        pytest.param(5, I, 5, id="int-into-int"),
        pytest.param(1.5, F, 1.5, id="float-into-float"),
        pytest.param(True, B, True, id="bool-into-bool"),
        pytest.param(
            "2024-05-01T12:00:00.000000Z",
            T,
            "2024-05-01T12:00:00.000000Z",
            id="timestamp-into-timestamp",
        ),
    ],
)
def test_coerce(value: Any, column_type: str, expected: Any) -> None:
    got = coerce(value, column_type)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "column_type"),
    [
        pytest.param(1.5, I, id="float-into-int"),
        pytest.param(True, I, id="bool-into-int"),
        pytest.param(1, B, id="int-into-bool"),
        pytest.param("abc", T, id="text-into-timestamp"),
        pytest.param("abc", F, id="text-into-float"),
        pytest.param(2.0, I, id="integral-float-into-int"),
    ],
)
def test_coerce_into_narrower_column_raises(value: Any, column_type: str) -> None:
    with pytest.raises(ValueError):
        coerce(value, column_type)


def test_fit_row_writes_a_timestamp_into_a_string_column_as_it_was_sent() -> None:
    row = {"at": "2024-01-01T08:00:00.000000Z", "n": 1}
    row_schema = {"at": "TIMESTAMP", "n": "INTEGER"}
    originals = {"at": "2024-01-01T10:00:00+02:00"}
    assert fit_row(row, row_schema, {"at": "STRING", "n": "STRING"}, originals) == {
        "at": "2024-01-01T10:00:00+02:00",
        "n": "1",
    }
    # A TIMESTAMP column keeps the canonical form; without originals, as before.
    assert fit_row(row, row_schema, {"at": "TIMESTAMP", "n": "INTEGER"}, originals) == row
    assert fit_row(row, row_schema, {"at": "STRING", "n": "INTEGER"})["at"] == row["at"]


def test_integers_past_2pow53_never_widen_to_float() -> None:
    assert widen(W, F) == widen(F, W) == S
    assert widen(W, I) == widen(I, W) == W
    assert union([{"n": I}, {"n": W}]) == {"n": W}
    assert union([{"n": W}, {"n": F}]) == {"n": S}  # digits kept as text
    assert plan_schema(None, {"n": W}).add == {"n": I}  # the column itself is INTEGER
    assert not plan_schema({"n": I}, {"n": W}).changes
    assert plan_schema({"n": F}, {"n": W}).rewrite == {"n": S}
    assert to_api({"n": W})[0].field_type == "INTEGER"


def test_coerce_never_rounds_an_integer_into_a_float_column() -> None:
    assert coerce(2**53, F) == float(2**53)
    with pytest.raises(ValueError, match="cannot hold 9007199254740993 exactly"):
        coerce(2**53 + 1, F)
    assert coerce(2**60, I) == 2**60
    assert coerce(2**60, S) == "1152921504606846976"
