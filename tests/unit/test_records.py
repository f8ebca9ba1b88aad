"""transforms.model.records.builder: the fast constructor builds the very record the class would."""

from __future__ import annotations

import pickle
from typing import NamedTuple

from transforms.model.normalize import TableRow
from transforms.model.records import builder


class Pair(NamedTuple):
    left: int
    right: str


def test_builder_makes_an_instance_equal_to_the_class_call() -> None:
    built = builder(Pair)((1, "a"))
    assert type(built) is Pair
    assert built == Pair(1, "a")
    assert (built.left, built.right) == (1, "a")


def test_builder_of_a_table_row_keeps_field_access_and_pickling() -> None:
    row = builder(TableRow)(("ds", "tracks", {"id": "m1"}, {"id": "STRING"}))
    assert row.table == "tracks" and row.row == {"id": "m1"}
    assert pickle.loads(pickle.dumps(row)) == TableRow(
        "ds", "tracks", {"id": "m1"}, {"id": "STRING"}
    )
