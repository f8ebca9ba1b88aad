"""Names BigQuery reserves never reach SQL or DDL, whoever wrote them (events, contracts)."""

from __future__ import annotations

import pytest

from pipeline.warehouse import identifiers
from pipeline.warehouse.identifiers import InvalidIdentifier


@pytest.mark.parametrize("name", ["INFORMATION_SCHEMA", "information_schema", "Information_Schema"])
def test_information_schema_is_no_dataset_name(name: str) -> None:
    with pytest.raises(InvalidIdentifier, match="dataset name BigQuery reserves"):
        identifiers.dataset_id(name)


@pytest.mark.parametrize(
    "name",
    ["INFORMATION_SCHEMA", "information_schema", "__TABLES__", "__tables_summary__",
     "__PARTITIONS_SUMMARY__"],
)  # fmt: skip
def test_metadata_and_meta_table_names_are_no_table_names(name: str) -> None:
    with pytest.raises(InvalidIdentifier, match="table name BigQuery reserves"):
        identifiers.table_id(name)


@pytest.mark.parametrize(
    "name",
    ["_PARTITIONTIME", "_partition_date", "_TABLE_SUFFIX", "_FILE_NAME", "_ROW_TIMESTAMP",
     "__ROOT__", "_COLIDENTIFIER", "_CHANGE_SEQUENCE_NUMBER", "_change_type",
     "_CHANGE_TIMESTAMP"],
)  # fmt: skip
def test_reserved_column_prefixes_are_refused_in_any_case(name: str) -> None:
    with pytest.raises(InvalidIdentifier, match="column name BigQuery reserves"):
        identifiers.quoted_column(name)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("dataset", "information_schema_source"), ("table", "information_schema_event"),
     ("table", "_opentrack_dead_letters"), ("column", "_opentrack_rank"), ("column", "partition")],
)  # fmt: skip
def test_the_names_the_model_makes_instead_pass(kind: str, name: str) -> None:
    check = {"dataset": identifiers.dataset_id, "table": identifiers.table_id}.get(
        kind, identifiers.column
    )
    assert check(name) == name
