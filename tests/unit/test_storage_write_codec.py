"""The Storage Write API's row codec and request chunking (pure parts)."""

from __future__ import annotations

import calendar

import pytest

from pipeline.warehouse.identifiers import InvalidIdentifier
from pipeline.warehouse.storage_write import codec_for
from transforms.beam.storage_write import _chunks

SCHEMA = {"id": "STRING", "n": "INTEGER", "x": "FLOAT", "ok": "BOOLEAN", "ts": "TIMESTAMP",
          "amount": "NUMERIC"}  # fmt: skip


def decoded(codec, data: bytes) -> dict:  # noqa: ANN001
    message = codec.message()
    message.ParseFromString(data)
    return {field.name: value for field, value in message.ListFields()}


def test_values_round_trip_with_timestamps_as_epoch_microseconds() -> None:
    codec = codec_for(SCHEMA)
    row = {"id": "m-1", "n": -7, "x": 2.5, "ok": False, "ts": "2026-11-01T10:00:02.000001Z",
           "amount": "12.30"}  # fmt: skip
    seconds = calendar.timegm((2026, 11, 1, 10, 0, 2, 0, 0, 0))
    assert decoded(codec, codec.encode(row)) == {**row, "ts": seconds * 1_000_000 + 1}


def test_none_and_absent_columns_are_left_unset() -> None:
    codec = codec_for(SCHEMA)
    assert decoded(codec, codec.encode({"id": "m-2", "n": None})) == {"id": "m-2"}


@pytest.mark.parametrize(
    "row",
    [{"n": "many"}, {"n": 2**63}, {"ts": "not a time"}, {"ok": "yes"}],
    ids=["text-in-integer", "beyond-int64", "bad-timestamp", "text-in-boolean"],
)
def test_a_value_its_column_cannot_hold_is_refused(row: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        codec_for(SCHEMA).encode(row)


def test_column_names_are_validated() -> None:
    with pytest.raises(InvalidIdentifier):
        codec_for({"bad name": "STRING"})


def test_chunks_stay_under_the_byte_limit_and_keep_order() -> None:
    items = [(n, b"x" * size) for n, size in enumerate([4, 4, 4, 9, 1])]
    chunks = list(_chunks(items, 8))
    assert [[n for n, _ in chunk] for chunk in chunks] == [[0, 1], [2], [3], [4]]
