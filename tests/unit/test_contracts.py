"""Schema contracts (pure): the loader's validation, retention, and the diff/planner for
every kind of drift and every refusal. The same rules against the emulator are in
tests/integration/test_contracts.py.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from pipeline.commands import schema as schema_cli
from pipeline.warehouse.contracts import (
    CLUSTERING_DRIFT,
    DATASET_DESCRIPTION,
    DATASET_LABELS,
    DATASET_LOCATION,
    DATASET_RETENTION,
    DAY_MS,
    DESCRIPTION_DRIFT,
    EXTRA_FIELD,
    FIELD_DESCRIPTION,
    LABELS_DRIFT,
    MISSING_DATASET,
    MISSING_FIELD,
    MISSING_TABLE,
    MODE_DRIFT,
    PARTITIONING_DRIFT,
    RENAMED_FIELD,
    RETENTION_DRIFT,
    TYPE_DRIFT,
    VERSION_DRIFT,
    Contract,
    ContractError,
    Drift,
    Field,
    LiveDataset,
    LiveTable,
    Partitioning,
    Step,
    TableContract,
    TablePatch,
    contract_from_data,
    dataset_patch,
    diff,
    diff_table,
    load_contract,
    parse_contract,
    parse_retention,
    plan,
    table_patch,
    widenings,
)
from pipeline.warehouse.contracts import apply as contract_apply

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "contracts" / "example.yaml"

# --- the loader ----------------------------------------------------------------------


def base() -> dict[str, Any]:
    """A valid contract as parsed YAML, for tests to break one thing at a time."""
    return {
        "datasets": [
            {
                "name": "shop",
                "location": "US",
                "tables": [
                    {
                        "name": "orders",
                        "partitioning": {"field": "created_at"},
                        "clustering": ["customer_id"],
                        "fields": [
                            {"name": "id", "type": "STRING", "mode": "REQUIRED"},
                            {"name": "customer_id", "type": "STRING"},
                            {"name": "created_at", "type": "TIMESTAMP"},
                            {"name": "day", "type": "DATE"},
                            {"name": "price", "type": "FLOAT64"},
                            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                            {
                                "name": "address",
                                "type": "RECORD",
                                "fields": [{"name": "city", "type": "STRING"}],
                            },
                        ],
                    }
                ],
            }
        ]
    }


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(base())
    change(data)
    return data


def _table(data: dict[str, Any]) -> dict[str, Any]:
    return data["datasets"][0]["tables"][0]


def _fields(data: dict[str, Any]) -> list[dict[str, Any]]:
    return _table(data)["fields"]


def test_the_base_contract_loads() -> None:
    contract = contract_from_data(base())
    table = contract.datasets[0].tables[0]
    assert [f.name for f in table.fields][:2] == ["id", "customer_id"]
    assert table.partitioning == Partitioning("created_at", "DAY")
    assert table.retention_days is None and table.expiration_ms is None


INVALID = [
    ("unknown top-level key", lambda d: d.update(tables=[]), "unknown key 'tables'"),
    ("unknown dataset key", lambda d: d["datasets"][0].update(region="EU"),
     "datasets[0]: unknown key 'region'"),
    ("unknown table key", lambda d: _table(d).update(partition="created_at"),
     "datasets[0].tables[0]: unknown key 'partition'"),
    ("unknown field key", lambda d: _fields(d)[0].update(nullable=True),
     "datasets[0].tables[0].fields[0]: unknown key 'nullable'"),
    ("bad dataset name", lambda d: d["datasets"][0].update(name="shop-eu"),
     "invalid BigQuery dataset name: 'shop-eu'"),
    ("bad table name", lambda d: _table(d).update(name="orders; DROP"),
     "invalid BigQuery table name"),
    ("bad column name", lambda d: _fields(d)[1].update(name="customer id"),
     "fields[1].name: invalid BigQuery column name: 'customer id'"),
    ("column starting with a digit", lambda d: _fields(d)[1].update(name="1st"),
     "invalid BigQuery column name: '1st'"),
    ("the specification's _partition_date", lambda d: _fields(d).append({"name": "_partition_date", "type": "DATE"}),
     "'_partition_date' starts with _PARTITION, which BigQuery reserves"),
    ("_PARTITIONTIME in any case", lambda d: _fields(d).append({"name": "_PartitionTime", "type": "TIMESTAMP"}),
     "starts with _PARTITION"),
    ("other reserved prefix", lambda d: _fields(d).append({"name": "_TABLE_SUFFIX", "type": "STRING"}),
     "starts with _TABLE_"),
    ("bad type", lambda d: _fields(d)[1].update(type="VARCHAR"),
     "fields[1].type: unknown type 'VARCHAR'"),
    ("type not text", lambda d: _fields(d)[1].update(type=3), "expected a type name, got int"),
    ("bad mode", lambda d: _fields(d)[1].update(mode="OPTIONAL"),
     "fields[1].mode: unknown mode 'OPTIONAL'"),
    ("missing type", lambda d: _fields(d)[1].pop("type"), "missing required key 'type'"),
    ("missing fields", lambda d: _table(d).pop("fields"), "missing required key 'fields'"),
    ("no columns", lambda d: _table(d).update(fields=[]), "a table needs at least one column"),
    ("record without fields", lambda d: _fields(d)[6].pop("fields"), "a RECORD needs a non-empty list of fields"),
    ("fields on a scalar", lambda d: _fields(d)[1].update(fields=[{"name": "x", "type": "STRING"}]),
     "only a RECORD has fields"),
    ("duplicate column, other case", lambda d: _fields(d).append({"name": "Customer_ID", "type": "STRING"}),
     "duplicate column 'Customer_ID'"),
    ("duplicate nested column", lambda d: _fields(d)[6]["fields"].append({"name": "city", "type": "STRING"}),
     "fields[6].fields[1]: duplicate column 'city'"),
    ("duplicate table", lambda d: d["datasets"][0]["tables"].append(copy.deepcopy(_table(d))),
     "duplicate table 'orders'"),
    ("duplicate dataset", lambda d: d["datasets"].append({"name": "shop"}), "duplicate dataset 'shop'"),
    ("five clustering columns", lambda d: _table(d).update(clustering=["id", "customer_id", "created_at", "day", "address"]),
     "BigQuery clusters by at most 4 columns, not 5"),
    ("clustering column missing", lambda d: _table(d).update(clustering=["nope"]),
     "clustering column 'nope' is not a column of the table"),
    ("clustering on FLOAT64", lambda d: _table(d).update(clustering=["price"]), "cannot cluster by price FLOAT64"),
    ("clustering on REPEATED", lambda d: _table(d).update(clustering=["tags"]), "cannot cluster by tags STRING REPEATED"),
    ("partition column missing", lambda d: _table(d).update(partitioning={"field": "sold_at"}),
     "partitioning.field: partition column 'sold_at' is not a column of the table"),
    ("partition key missing", lambda d: _table(d).update(partitioning={"type": "DAY"}),
     "partitioning: missing required key 'field'"),
    ("partition column of the wrong type", lambda d: _table(d).update(partitioning={"field": "customer_id"}),
     "it must be a single TIMESTAMP, DATE or DATETIME"),
    ("partition column repeated", lambda d: _fields(d).append({"name": "ats", "type": "TIMESTAMP", "mode": "REPEATED"})
     or _table(d).update(partitioning={"field": "ats"}), "it must be a single TIMESTAMP"),
    ("unknown partitioning type", lambda d: _table(d).update(partitioning={"field": "created_at", "type": "WEEK"}),
     "unknown partitioning type 'WEEK'"),
    ("DATE by HOUR", lambda d: _table(d).update(partitioning={"field": "day", "type": "HOUR"}),
     "a DATE column (day) cannot be partitioned by HOUR"),
    ("retention without partitions", lambda d: _table(d).pop("partitioning") and _table(d).update(retention="2y", clustering=[]),
     "retention expires partitions, and this table is not partitioned"),
    ("bad retention", lambda d: _table(d).update(retention="7 years"),
     "retention must be like '7y', '90d', a number of days or 'none', not '7 years'"),
    ("bad dataset retention", lambda d: d["datasets"][0].update(retention="0d"), "retention must be positive"),
    ("none under a dataset default", lambda d: d["datasets"][0].update(retention="2y") or _table(d).update(retention="none"),
     "'none' is not possible in a dataset whose retention is 731 days"),
    ("unquoted schema version", lambda d: _table(d).update(schema_version=1.1),
     "schema_version: expected quoted text"),
    ("bad label key", lambda d: d["datasets"][0].update(labels={"Team": "data"}), "invalid label key 'Team'"),
    ("bad label value", lambda d: d["datasets"][0].update(labels={"team": "Data Eng"}), "invalid label value 'Data Eng'"),
    ("version label set by hand", lambda d: _table(d).update(labels={"schema_version": "1"}),
     "label 'schema_version' is set from schema_version"),
    ("versioning not a bool", lambda d: _table(d).update(versioning="yes"), "expected true or false, got 'yes'"),
    ("versioning conflict", lambda d: _table(d).update(versioning=True) or _fields(d).append({"name": "version", "type": "INT64"}),
     "versioning adds version STRING; the declared version INT64 conflicts"),
    ("renamed_from itself", lambda d: _fields(d)[1].update(renamed_from="customer_id"), "is the column's own name"),
    ("no datasets", lambda d: d.update(datasets=[]), "declare at least one dataset"),
    ("datasets not a list", lambda d: d.update(datasets={"name": "shop"}), "datasets: expected a list, got dict"),
    ("description not text", lambda d: _table(d).update(description=["x"]), "description: expected text, got list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_contracts_are_refused_with_a_clear_message(change, message: str) -> None:
    with pytest.raises(ContractError) as raised:
        contract_from_data(broken(change), "c.yaml")
    assert message in str(raised.value)
    assert all(line.startswith("c.yaml: ") for line in str(raised.value).splitlines())


def test_the_partition_date_refusal_says_what_to_do_instead() -> None:
    with pytest.raises(ContractError) as raised:
        contract_from_data(
            broken(lambda d: _fields(d).append({"name": "_partition_date", "type": "DATE"}))
        )
    assert "DATE(<partition column>)" in str(raised.value)
    assert "partitioning: {field: created_at}" in str(raised.value)


def test_every_problem_is_reported_at_once() -> None:
    def three_problems(d: dict[str, Any]) -> None:
        _fields(d)[1]["type"] = "TEXT"
        _table(d)["clustering"] = ["a", "b", "c", "d", "e"]
        d["datasets"][0]["owner"] = "x"

    with pytest.raises(ContractError) as raised:
        contract_from_data(broken(three_problems))
    assert len(raised.value.problems) == 3


def test_duplicate_yaml_keys_are_refused() -> None:
    with pytest.raises(ContractError, match=r"line 3, column 5: .*duplicate key 'name'"):
        parse_contract("datasets:\n  - name: a\n    name: b\n", "c.yaml")


def test_yaml_syntax_errors_say_where() -> None:
    with pytest.raises(ContractError, match=r"c.yaml: line 2, column \d+: not valid YAML"):
        parse_contract("datasets:\n  - name: a: b\n", "c.yaml")


@pytest.mark.parametrize("text", ["", "[]", "datasets: 3"])
def test_a_contract_must_be_a_mapping_of_datasets(text: str) -> None:
    with pytest.raises(ContractError):
        parse_contract(text)


def test_an_unreadable_file_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read the file"):
        load_contract(tmp_path / "nope.yaml")


def test_types_are_normalized_to_standard_sql_names() -> None:
    data = broken(lambda d: _fields(d).extend([
        {"name": "a", "type": "integer"}, {"name": "b", "type": "FLOAT"},
        {"name": "c", "type": "BOOLEAN"}, {"name": "d", "type": "STRUCT", "fields": [{"name": "x", "type": "INT64"}]},
        {"name": "e", "type": "BIGNUMERIC"}, {"name": "f", "type": "GEOGRAPHY"}, {"name": "g", "type": "JSON"},
        {"name": "h", "type": "BYTES"}, {"name": "i", "type": "TIME"}, {"name": "j", "type": "DATETIME"},
    ]))  # fmt: skip
    fields = {f.name: f.type for f in contract_from_data(data).datasets[0].tables[0].fields}
    assert [fields[c] for c in "abcdefghij"] == [
        "INT64", "FLOAT64", "BOOL", "RECORD", "BIGNUMERIC", "GEOGRAPHY", "JSON", "BYTES", "TIME", "DATETIME",
    ]  # fmt: skip


def test_versioning_adds_the_seed_columns_but_no_partition_date_column() -> None:
    table = (
        contract_from_data(broken(lambda d: _table(d).update(versioning=True)))
        .datasets[0]
        .tables[0]
    )
    added = [f.render() for f in table.fields if f.name in ("created_at", "updated_at", "version")]
    assert added == ["created_at TIMESTAMP", "updated_at TIMESTAMP", "version STRING"]
    assert not any(f.name.lower().startswith("_partition") for f in table.fields)
    assert table.versioning


def test_retention_defaults_to_the_dataset_for_partitioned_tables_only() -> None:
    def two_tables(d: dict[str, Any]) -> None:
        d["datasets"][0]["retention"] = "2y"
        d["datasets"][0]["tables"].append(
            {"name": "items", "fields": [{"name": "id", "type": "STRING"}]}
        )
        d["datasets"][0]["tables"].append(
            {"name": "audit", "partitioning": {"field": "at"}, "retention": "7y",
             "fields": [{"name": "at", "type": "TIMESTAMP"}]}
        )  # fmt: skip

    dataset = contract_from_data(broken(two_tables)).datasets[0]
    orders, items, audit = dataset.tables
    assert dataset.default_partition_expiration_ms == 731 * DAY_MS
    assert orders.retention_days == 731 and orders.expiration_ms == 731 * DAY_MS
    assert items.retention_days is None and items.expiration_ms is None
    assert audit.expiration_ms == 2557 * DAY_MS


def test_the_example_contract_loads() -> None:
    contract = load_contract(EXAMPLE)
    datasets = {d.name: d for d in contract.datasets}
    assert {name: [t.name for t in d.tables] for name, d in datasets.items()} == {
        "commerce": ["square_payments", "square_items", "memberships", "raffles",
                     "raffle_tickets", "raffle_transactions"],
        "analytics": ["lightspeed_transactions", "lightspeed_products"],
        "customer_memory": ["customer_profiles", "interactions", "purchases", "predictions",
                            "audit_logs"],
    }  # fmt: skip
    tables = {(d.name, t.name): t for d in contract.datasets for t in d.tables}
    seven_years, two_years = 2557, 731
    for key, days, column in [
        (("commerce", "square_payments"), seven_years, "created_at"),
        (("commerce", "memberships"), seven_years, "created_at"),
        (("commerce", "raffles"), seven_years, "created_at"),
        (("commerce", "raffle_tickets"), seven_years, "purchase_date"),
        (("customer_memory", "customer_profiles"), two_years, "timestamp"),
        (("customer_memory", "interactions"), two_years, "timestamp"),
    ]:
        assert tables[key].retention_days == days, key
        assert tables[key].partitioning == Partitioning(column, "DAY"), key
    for latest_only in [("commerce", "square_items"), ("analytics", "lightspeed_products")]:
        assert tables[latest_only].partitioning is None
        assert tables[latest_only].expiration_ms is None
    critical = {
        ("commerce", "square_payments"): {"id", "amount", "customer_id", "status"},
        ("commerce", "square_items"): {"id", "name", "price", "available"},
        ("commerce", "memberships"): {"id", "customer_id", "tier", "status", "next_billing_date"},
        ("commerce", "raffles"): {"id", "prize", "max_tickets", "winner_id", "draw_timestamp"},
        ("commerce", "raffle_tickets"): {"id", "raffle_id", "customer_id", "ticket_number", "is_winner"},
        ("customer_memory", "customer_profiles"): {"customer_id", "profile_json", "churn_risk", "lifetime_value"},
        ("customer_memory", "interactions"): {"interaction_id", "customer_id", "message", "sentiment", "intent"},
    }  # fmt: skip
    for key, columns in critical.items():
        assert columns <= {f.name for f in tables[key].fields}, key
    for table in tables.values():
        assert table.versioning and {"created_at", "updated_at", "version"} <= {
            f.name for f in table.fields
        }
        assert table.all_labels["schema_version"] == "1_1"


# --- retention -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "days"),
    [("7y", 2557), ("2y", 731), ("1y", 366), ("4y", 1461), ("90d", 90), ("90D", 90), (" 30d ", 30),
     (90, 90), ("none", None), ("None", None), (None, None)],
)  # fmt: skip
def test_retention_parsing(value: object, days: int | None) -> None:
    assert parse_retention(value) == days


@pytest.mark.parametrize("value", ["0d", 0, -5, "7 years", "7", "y", "7m", 1.5, True, [7]])
def test_invalid_retention(value: object) -> None:
    with pytest.raises(ValueError, match="retention must be"):
        parse_retention(value)


# --- the diff and the planner --------------------------------------------------------

CONTRACT = """
datasets:
  - name: shop
    location: US
    description: The shop.
    labels: {team: data}
    retention: 90d
    tables:
      - name: orders
        description: Orders.
        schema_version: "2.0"
        labels: {owner: shop}
        versioning: true
        partitioning: {field: created_at}
        clustering: [customer_id]
        fields:
          - {name: id, type: STRING, mode: REQUIRED, description: Order id.}
          - {name: customer_id, type: STRING}
          - {name: amount, type: NUMERIC}
          - {name: tags, type: STRING, mode: REPEATED}
          - name: address
            type: RECORD
            fields:
              - {name: city, type: STRING}
              - {name: zip, type: INT64}
"""


def contract() -> Contract:
    return parse_contract(CONTRACT, "c.yaml")


def orders() -> TableContract:
    return contract().datasets[0].tables[0]


def in_sync(table: TableContract) -> LiveTable:
    """What BigQuery would show for ``table`` created from the contract."""
    return LiveTable(
        fields=tuple(replace(f, renamed_from=None) for f in table.fields),
        partitioning=table.partitioning,
        expiration_ms=table.expiration_ms,
        clustering=table.clustering,
        labels=table.all_labels,
        description=table.description,
    )


def live_with(**changes: Any) -> LiveTable:
    return replace(in_sync(orders()), **changes)


def with_field(name: str, **changes: Any) -> tuple[Field, ...]:
    """The in-sync live columns with one of them changed (or dropped: ``drop=True``)."""
    drop = changes.pop("drop", False)
    fields = []
    for column in in_sync(orders()).fields:
        if column.name != name:
            fields.append(column)
        elif not drop:
            fields.append(replace(column, **changes))
    return tuple(fields)


def only_step(live: LiveTable, table: TableContract | None = None) -> Step:
    steps = plan(diff_table("shop", table or orders(), live))
    assert len(steps) == 1, [s.render() for s in steps]
    return steps[0]


def test_a_table_in_sync_has_no_drift() -> None:
    assert diff_table("shop", orders(), in_sync(orders())) == []


def test_a_warehouse_in_sync_has_no_drift() -> None:
    live = LiveDataset(
        location="us", description="The shop.", labels={"team": "data", "other": "x"},
        default_partition_expiration_ms=90 * DAY_MS, tables={"orders": in_sync(orders())},
    )  # fmt: skip
    assert diff(contract(), {"shop": live}) == []


def test_live_labels_the_contract_does_not_name_are_not_drift() -> None:
    live = live_with(labels={**orders().all_labels, "opentrack_schema_version": "7"})
    assert diff_table("shop", orders(), live) == []


def test_missing_dataset_creates_it_and_its_tables() -> None:
    steps = plan(diff(contract(), {}))
    assert [(s.drift.kind, s.drift.target, s.safe) for s in steps] == [
        (MISSING_DATASET, "shop", True),
        (MISSING_TABLE, "shop.orders", True),
    ]
    assert steps[0].action == (
        "create dataset shop (location US; labels team=data; default partitions expire after 90 days)"
    )
    assert steps[1].action == (
        "create table shop.orders (8 columns; partitioned by DAY(created_at); partitions expire "
        "after 90 days; clustered by customer_id; labels owner=shop, schema_version=2_0)"
    )


def test_missing_table_is_created() -> None:
    live = LiveDataset(location="US", description="The shop.", labels={"team": "data"},
                       default_partition_expiration_ms=90 * DAY_MS)  # fmt: skip
    step = plan(diff(contract(), {"shop": live}))[0]
    assert (step.drift.kind, step.safe, step.action.split(" (")[0]) == (
        MISSING_TABLE, True, "create table shop.orders",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("drift", "kind", "safe", "action", "why"),
    [
        ("location", DATASET_LOCATION, False, "move dataset shop from EU to US", "location is fixed"),
        ("retention", DATASET_RETENTION, True,
         "set the default partition expiration of shop: partitions expire after 90 days", "tables created from now on"),
        ("labels", DATASET_LABELS, True, "set labels team=data on shop", ""),
        ("description", DATASET_DESCRIPTION, True, "set the description of shop", ""),
    ],
)  # fmt: skip
def test_dataset_drift(drift: str, kind: str, safe: bool, action: str, why: str) -> None:
    settings = {"location": "US", "description": "The shop.", "labels": {"team": "data"},
                "default_partition_expiration_ms": 90 * DAY_MS}  # fmt: skip
    settings.update(
        {"location": {"location": "EU"}, "retention": {"default_partition_expiration_ms": None},
         "labels": {"labels": {"team": "ads"}}, "description": {"description": None}}[drift]
    )  # fmt: skip
    live = LiveDataset(**settings, tables={"orders": in_sync(orders())})
    [step] = plan(diff(contract(), {"shop": live}))
    assert (step.drift.kind, step.safe, step.action) == (kind, safe, action)
    assert why in step.why


def test_missing_nullable_field_is_added() -> None:
    step = only_step(live_with(fields=with_field("customer_id", drop=True)))
    assert (step.drift.kind, step.drift.target, step.safe) == (
        MISSING_FIELD,
        "shop.orders.customer_id",
        True,
    )
    assert step.action == "add column shop.orders.customer_id STRING"
    assert step.drift.describe() == "column customer_id (STRING) is missing"


def test_missing_repeated_field_is_added() -> None:
    step = only_step(live_with(fields=with_field("tags", drop=True)))
    assert step.safe and step.action == "add column shop.orders.tags STRING REPEATED"


def test_missing_nested_field_is_added_inside_its_record() -> None:
    address = next(f for f in in_sync(orders()).fields if f.name == "address")
    live = live_with(fields=with_field("address", fields=address.fields[:1]))
    step = only_step(live)
    assert (step.drift.kind, step.drift.path, step.safe) == (
        MISSING_FIELD,
        ("address", "zip"),
        True,
    )
    assert step.action == "add column shop.orders.address.zip INT64"


def test_missing_required_field_is_refused() -> None:
    step = only_step(live_with(fields=with_field("id", drop=True)))
    assert (step.drift.kind, step.safe) == (MISSING_FIELD, False)
    assert step.render().startswith(
        "REFUSED add column shop.orders.id STRING REQUIRED: id is REQUIRED"
    )
    assert "existing rows have no value" in step.why


def test_a_new_record_holding_a_required_field_is_refused() -> None:
    table = (
        parse_contract(
            "datasets:\n- name: shop\n  tables:\n  - name: t\n    fields:\n    - {name: id, type: STRING}\n"
            "    - {name: r, type: RECORD, fields: [{name: k, type: STRING, mode: REQUIRED}]}\n"
        )
        .datasets[0]
        .tables[0]
    )
    live = LiveTable(fields=(Field("id", "STRING"),))
    step = only_step(live, table)
    assert not step.safe and step.why.startswith("r.k is REQUIRED")


def test_extra_field_is_refused() -> None:
    live = live_with(fields=in_sync(orders()).fields + (Field("legacy", "STRING"),))
    step = only_step(live)
    assert (step.drift.kind, step.drift.target, step.safe) == (
        EXTRA_FIELD,
        "shop.orders.legacy",
        False,
    )
    assert step.action == "drop column shop.orders.legacy STRING"
    assert "apply never drops" in step.why


def test_extra_nested_field_is_refused() -> None:
    address = next(f for f in in_sync(orders()).fields if f.name == "address")
    live = live_with(
        fields=with_field("address", fields=address.fields + (Field("street", "STRING"),))
    )
    step = only_step(live)
    assert (step.drift.kind, step.drift.target, step.safe) == (
        EXTRA_FIELD,
        "shop.orders.address.street",
        False,
    )


def test_rename_is_refused_and_not_reported_as_missing_plus_extra() -> None:
    table = replace(
        orders(),
        fields=tuple(
            replace(f, name="client_id", renamed_from="customer_id")
            if f.name == "customer_id"
            else f
            for f in orders().fields
        ),
        clustering=(),
    )
    step = only_step(replace(live_with(), clustering=()), table)
    assert (step.drift.kind, step.drift.target, step.safe) == (
        RENAMED_FIELD,
        "shop.orders.customer_id",
        False,
    )
    assert step.action == "rename column shop.orders.customer_id to client_id"
    assert "apply never renames" in step.why


def test_renamed_field_already_renamed_is_in_sync() -> None:
    table = replace(
        orders(),
        fields=tuple(
            replace(f, renamed_from="cust") if f.name == "customer_id" else f
            for f in orders().fields
        ),
    )
    assert diff_table("shop", table, in_sync(orders())) == []


@pytest.mark.parametrize(
    ("live", "wanted"),
    [("INT64", "FLOAT64"), ("INT64", "NUMERIC"), ("INT64", "BIGNUMERIC"), ("NUMERIC", "BIGNUMERIC"),
     ("NUMERIC", "FLOAT64"), ("BIGNUMERIC", "FLOAT64")],
)  # fmt: skip
def test_type_widening_is_done_in_place(live: str, wanted: str) -> None:
    table = replace(
        orders(),
        fields=tuple(replace(f, type=wanted) if f.name == "amount" else f for f in orders().fields),
    )
    step = only_step(live_with(fields=with_field("amount", type=live)), table)
    assert (step.drift.kind, step.safe) == (TYPE_DRIFT, True)
    assert (
        step.action
        == f"widen column shop.orders.amount from {live} to {wanted} in place (ALTER COLUMN SET DATA TYPE)"
    )
    assert widenings([step]) == [("amount", wanted)]


def test_type_narrowing_is_refused() -> None:
    step = only_step(live_with(fields=with_field("amount", type="FLOAT64")))  # contract: NUMERIC
    assert (step.drift.kind, step.safe) == (TYPE_DRIFT, False)
    assert step.action == "change column shop.orders.amount from FLOAT64 to NUMERIC"
    assert step.why.startswith("narrowing FLOAT64 to NUMERIC could fail or lose precision")


@pytest.mark.parametrize(
    ("live", "column"), [("STRING", "amount"), ("INT64", "customer_id"), ("BOOL", "customer_id")]
)
def test_other_type_changes_are_refused(live: str, column: str) -> None:
    step = only_step(live_with(fields=with_field(column, type=live)))
    assert (step.drift.kind, step.safe) == (TYPE_DRIFT, False)
    assert "not one of BigQuery's in-place widenings" in step.why


def test_record_to_scalar_is_refused() -> None:
    step = only_step(live_with(fields=with_field("address", type="STRING", fields=())))
    assert (step.drift.kind, step.drift.have, step.drift.want, step.safe) == (
        TYPE_DRIFT,
        "STRING",
        "RECORD",
        False,
    )


def test_nested_widening_is_refused() -> None:
    address = next(f for f in in_sync(orders()).fields if f.name == "address")
    nested = (address.fields[0], replace(address.fields[1], type="INT64"))
    table = replace(
        orders(),
        fields=tuple(
            replace(f, fields=(f.fields[0], replace(f.fields[1], type="FLOAT64")))
            if f.name == "address"
            else f
            for f in orders().fields
        ),
    )
    step = only_step(live_with(fields=with_field("address", fields=nested)), table)
    assert (step.drift.target, step.safe) == ("shop.orders.address.zip", False)
    assert "nested field only by rewriting" in step.why


def test_mode_relaxing_is_safe() -> None:
    step = only_step(live_with(fields=with_field("customer_id", mode="REQUIRED")))
    assert (step.drift.kind, step.safe) == (MODE_DRIFT, True)
    assert step.action == "relax column shop.orders.customer_id from REQUIRED to NULLABLE"


def test_mode_tightening_is_refused() -> None:
    step = only_step(live_with(fields=with_field("id", mode="NULLABLE")))
    assert (step.drift.kind, step.safe) == (MODE_DRIFT, False)
    assert step.action == "change column shop.orders.id from NULLABLE to REQUIRED"
    assert "never tightens a mode to REQUIRED" in step.why


@pytest.mark.parametrize(("column", "live"), [("customer_id", "REPEATED"), ("tags", "NULLABLE")])
def test_mode_changes_to_or_from_repeated_are_refused(column: str, live: str) -> None:
    step = only_step(live_with(fields=with_field(column, mode=live)))
    assert (step.drift.kind, step.safe) == (MODE_DRIFT, False)
    assert "REPEATED changes the column's shape" in step.why


def test_field_description_is_set() -> None:
    step = only_step(live_with(fields=with_field("id", description=None)))
    assert (step.drift.kind, step.safe, step.action) == (
        FIELD_DESCRIPTION, True, "set the description of column shop.orders.id",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("live", "action"),
    [
        (None, "partition shop.orders by DAY(created_at)"),
        (
            Partitioning("updated_at", "DAY"),
            "re-partition shop.orders from DAY(updated_at) to DAY(created_at)",
        ),
        (
            Partitioning("created_at", "MONTH"),
            "re-partition shop.orders from MONTH(created_at) to DAY(created_at)",
        ),
        (
            Partitioning("_PARTITIONTIME", "DAY"),
            "re-partition shop.orders from DAY(_PARTITIONTIME) to DAY(created_at)",
        ),
    ],
)
def test_partitioning_drift_is_refused(live: Partitioning | None, action: str) -> None:
    step = only_step(live_with(partitioning=live))
    assert (step.drift.kind, step.safe, step.action) == (PARTITIONING_DRIFT, False, action)
    assert "cannot change: it needs a rewrite" in step.why


def test_removing_partitioning_is_refused() -> None:
    table = replace(orders(), partitioning=None, retention_days=None)
    step = only_step(in_sync(orders()), table)
    assert (step.drift.kind, step.safe) == (PARTITIONING_DRIFT, False)
    assert step.action == "remove the partitioning DAY(created_at) of shop.orders"


@pytest.mark.parametrize(
    ("live_ms", "text"),
    [(30 * DAY_MS, "partitions: live expire after 30 days, contract expire after 90 days"),
     (None, "partitions: live never expire, contract expire after 90 days")],
)  # fmt: skip
def test_retention_drift_sets_the_partition_expiration(live_ms: int | None, text: str) -> None:
    step = only_step(live_with(expiration_ms=live_ms))
    assert (step.drift.kind, step.safe) == (RETENTION_DRIFT, True)
    assert step.drift.describe() == text
    assert (
        step.action
        == "set the partition expiration of shop.orders: partitions expire after 90 days"
    )


def test_retention_none_removes_the_expiration() -> None:
    table = replace(orders(), retention_days=None)
    step = only_step(in_sync(orders()), table)
    assert (step.drift.kind, step.drift.want, step.safe) == (RETENTION_DRIFT, None, True)
    assert step.action.endswith("partitions never expire")


@pytest.mark.parametrize(
    ("live", "text"),
    [((), "clustering: live nothing, contract (customer_id)"),
     (("id", "customer_id"), "clustering: live (id, customer_id), contract (customer_id)")],
)  # fmt: skip
def test_clustering_drift_is_set(live: tuple[str, ...], text: str) -> None:
    step = only_step(live_with(clustering=live))
    assert (step.drift.kind, step.safe, step.action) == (
        CLUSTERING_DRIFT,
        True,
        "cluster shop.orders by customer_id",
    )
    assert step.drift.describe() == text


def test_clustering_on_a_column_that_cannot_be_added_is_refused() -> None:
    table = replace(
        orders(),
        fields=orders().fields + (Field("region", "STRING", mode="REQUIRED"),),
        clustering=("customer_id", "region"),
    )
    steps = plan(diff_table("shop", table, in_sync(orders())))
    assert [(s.drift.kind, s.safe) for s in steps] == [
        (MISSING_FIELD, False),
        (CLUSTERING_DRIFT, False),
    ]
    assert steps[1].why == "column region is not in the table and cannot be added safely"


def test_version_label_drift_is_set() -> None:
    step = only_step(live_with(labels={"owner": "shop", "schema_version": "1_0"}))
    assert (step.drift.kind, step.safe, step.action) == (
        VERSION_DRIFT,
        True,
        "set label schema_version=2_0 on shop.orders",
    )
    assert step.drift.describe() == "label schema_version: live 1_0, contract 2_0"
    missing = only_step(live_with(labels={"owner": "shop"}))
    assert missing.drift.describe() == "label schema_version: live (unset), contract 2_0"


def test_labels_and_description_drift_are_set() -> None:
    steps = plan(
        diff_table("shop", orders(), live_with(labels={"schema_version": "2_0"}, description="x"))
    )
    assert [(s.drift.kind, s.safe, s.action) for s in steps] == [
        (LABELS_DRIFT, True, "set labels owner=shop on shop.orders"),
        (DESCRIPTION_DRIFT, True, "set the description of shop.orders"),
    ]


def test_every_drift_at_once_is_planned_in_order() -> None:
    fields = with_field("amount", type="INT64") + (Field("legacy", "STRING"),)
    fields = tuple(f for f in fields if f.name != "customer_id")
    live = live_with(fields=fields, expiration_ms=None, clustering=(), labels={"owner": "shop"})
    steps = plan(diff_table("shop", orders(), live))
    assert [(s.drift.kind, s.drift.column, s.safe) for s in steps] == [
        (MISSING_FIELD, "customer_id", True),
        (TYPE_DRIFT, "amount", True),
        (EXTRA_FIELD, "legacy", False),
        (RETENTION_DRIFT, "", True),
        (CLUSTERING_DRIFT, "", True),
        (VERSION_DRIFT, "", True),
    ]


# --- what apply sends ----------------------------------------------------------------


def test_table_patch_carries_every_safe_change_of_a_table() -> None:
    address = next(f for f in in_sync(orders()).fields if f.name == "address")
    fields = with_field("address", fields=address.fields[:1])
    fields = tuple(replace(f, mode="REQUIRED") if f.name == "customer_id" else f for f in fields)
    fields = tuple(replace(f, description=None) if f.name == "id" else f for f in fields)
    fields = tuple(f for f in fields if f.name != "tags") + (Field("legacy", "STRING"),)
    live = live_with(
        fields=fields, expiration_ms=None, clustering=("id",),
        labels={"owner": "other", "opentrack_schema_version": "3"}, description=None,
    )  # fmt: skip
    steps = plan(diff_table("shop", orders(), live))

    patch = table_patch(live, steps)

    assert patch.fields is not None
    by_name = {f.name: f for f in patch.fields}
    assert by_name["customer_id"].mode == "NULLABLE"
    assert by_name["id"].description == "Order id."
    assert [f.name for f in by_name["address"].fields] == ["city", "zip"]
    assert [f.name for f in patch.fields][-2:] == ["legacy", "tags"]  # kept, then added
    assert patch.labels == {
        "owner": "shop",
        "opentrack_schema_version": "3",
        "schema_version": "2_0",
    }
    assert patch.description == "Orders."
    assert (patch.set_expiration, patch.expiration_ms) == (True, 90 * DAY_MS)
    assert patch.clustering == ("customer_id",)


def test_table_patch_leaves_out_refused_changes_and_widenings() -> None:
    live = live_with(fields=with_field("amount", type="INT64") + (Field("legacy", "STRING"),),
                     partitioning=Partitioning("updated_at", "DAY"))  # fmt: skip
    steps = plan(diff_table("shop", orders(), live))
    assert table_patch(live, steps) == TablePatch()
    assert widenings(steps) == [("amount", "NUMERIC")]


def test_table_patch_removes_expiration_and_clustering() -> None:
    table = replace(orders(), retention_days=None, clustering=())
    patch = table_patch(in_sync(orders()), plan(diff_table("shop", table, in_sync(orders()))))
    assert patch == TablePatch(set_expiration=True, expiration_ms=None, clustering=())


def test_dataset_patch() -> None:
    live = LiveDataset(
        location="US", labels={"team": "ads", "cost": "a"}, default_partition_expiration_ms=DAY_MS
    )
    steps = plan(diff(contract(), {"shop": replace(live, tables={"orders": in_sync(orders())})}))
    patch = dataset_patch(live, steps)
    assert patch.labels == {"team": "data", "cost": "a"}
    assert patch.description == "The shop."
    assert (patch.set_expiration, patch.default_partition_expiration_ms) == (True, 90 * DAY_MS)


def test_live_api_schemas_are_read_with_standard_type_names() -> None:
    S = bigquery.SchemaField
    fields = contract_apply.fields_from_api(
        [S("a", "INTEGER", mode="REQUIRED"), S("b", "FLOAT"), S("c", "BOOLEAN"),
         S("d", "RECORD", mode="REPEATED", fields=[S("e", "INT64"), S("f", "STRUCT", fields=[S("g", "STRING")])])]
    )  # fmt: skip
    assert [f.render() for f in fields] == [
        "a INT64 REQUIRED", "b FLOAT64", "c BOOL", "d RECORD<e INT64, f RECORD<g STRING>> REPEATED",
    ]  # fmt: skip


def test_a_schema_patch_keeps_what_the_contract_does_not_model() -> None:
    S = bigquery.SchemaField
    tags = bigquery.PolicyTagList(names=["projects/p/locations/us/taxonomies/1/policyTags/2"])
    live = [
        S("email", "STRING", mode="REQUIRED", policy_tags=tags),
        S("price", "NUMERIC", precision=10, scale=2),
        S("address", "RECORD", fields=[S("city", "STRING", max_length=80)]),
    ]
    wanted = (
        Field("email", "STRING", "NULLABLE", "Contact."),
        Field("price", "NUMERIC"),
        Field("address", "RECORD", fields=(Field("city", "STRING"), Field("zip", "STRING"))),
        Field("note", "STRING"),
    )

    merged = contract_apply.merged_api_schema(live, wanted)

    assert [(f.name, f.mode) for f in merged] == [
        ("email", "NULLABLE"), ("price", "NULLABLE"), ("address", "NULLABLE"), ("note", "NULLABLE"),
    ]  # fmt: skip
    assert merged[0].policy_tags == tags and merged[0].description == "Contact."
    assert (merged[1].precision, merged[1].scale) == (10, 2)
    assert [(f.name, f.max_length) for f in merged[2].fields] == [("city", 80), ("zip", None)]


def test_tables_are_created_from_the_contract() -> None:
    spec = contract_apply.table_spec("test-project", "shop", orders())
    assert spec.time_partitioning.type_ == "DAY"
    assert spec.time_partitioning.field == "created_at"
    assert spec.time_partitioning.expiration_ms == 90 * DAY_MS
    assert spec.clustering_fields == ["customer_id"]
    assert spec.labels == {"owner": "shop", "schema_version": "2_0"}
    assert spec.description == "Orders."
    api = {f.name: (f.field_type, f.mode) for f in spec.schema}
    assert api["id"] == ("STRING", "REQUIRED") and api["tags"] == ("STRING", "REPEATED")
    assert api["amount"] == ("NUMERIC", "NULLABLE") and api["address"] == ("RECORD", "NULLABLE")
    dataset = contract_apply.dataset_spec("test-project", contract().datasets[0])
    assert (dataset.location, dataset.labels, dataset.default_partition_expiration_ms) == (
        "US", {"team": "data"}, 90 * DAY_MS,
    )  # fmt: skip


# --- the command's reports and its exit code 2 ---------------------------------------


def test_check_report_lists_each_object_and_a_verdict() -> None:
    drifts = [
        Drift(MISSING_FIELD, "shop", "orders", ("status",), Field("status", "STRING")),
        Drift(TYPE_DRIFT, "shop", "orders", ("amount",), "NUMERIC", "INT64"),
    ]
    report = schema_cli.render_check(contract(), "p", drifts).splitlines()
    assert report[0] == "Checking c.yaml against project p: 1 dataset, 1 table"
    assert report[1].split() == ["shop", "ok"]
    assert report[2].split()[:3] == ["shop.orders", "2", "drifts"]
    assert "missing field" in report[3] and "column status (STRING) is missing" in report[3]
    assert (
        "type drift" in report[4] and "column amount is INT64, contract says NUMERIC" in report[4]
    )
    assert report[-1] == "DRIFT: 2 drifts in 1 of 2 objects (missing field 1, type drift 1)"
    clean = schema_cli.render_check(contract(), "p", [])
    assert clean.splitlines()[-1] == "OK: the warehouse matches the contract"


def test_plan_report_is_numbered_with_refusals_explained() -> None:
    live = live_with(fields=with_field("amount", type="INT64") + (Field("legacy", "STRING"),))
    report = schema_cli.render_plan(contract(), "p", plan(diff_table("shop", orders(), live)))
    assert report.splitlines() == [
        "Plan for c.yaml against project p: 1 to apply, 1 refused",
        "  1. widen column shop.orders.amount from INT64 to NUMERIC in place (ALTER COLUMN SET DATA TYPE)",
        (
            "  2. REFUSED drop column shop.orders.legacy STRING: dropping a column deletes its data "
            "in every row and breaks its readers; apply never drops: add it to the contract, or drop "
            "it by hand after a backup"
        ),
    ]


@pytest.mark.parametrize("action", ["check", "plan", "apply"])
def test_an_invalid_contract_exits_2_before_any_call(action: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "datasets:\n  - name: shop\n    tables:\n      - name: t\n        fields: [{name: x, type: TEXT}]\n"
    )
    out, err = io.StringIO(), io.StringIO()

    code = schema_cli.main([action, "--contracts", str(path), "--bigquery_project", "test-project",
                            "--bigquery_endpoint", "http://127.0.0.1:9"], out=out, err=err)  # fmt: skip

    assert code == 2
    assert "error: invalid contract (1 problems)" in err.getvalue()
    assert "fields[0].type: unknown type 'TEXT'" in err.getvalue()
    assert out.getvalue() == ""


def test_a_missing_contract_file_and_bad_usage_exit_2(tmp_path: Path) -> None:
    err = io.StringIO()
    assert schema_cli.main(["check", "--contracts", str(tmp_path / "no.yaml")], err=err) == 2
    assert "cannot read the file" in err.getvalue()
    assert schema_cli.main(["check"], err=io.StringIO()) == 2
    assert schema_cli.main(["migrate", "--contracts", "x"], err=io.StringIO()) == 2


def test_an_invalid_project_exits_2(tmp_path: Path) -> None:
    err = io.StringIO()
    code = schema_cli.main(
        ["check", "--contracts", str(EXAMPLE), "--bigquery_project", "Bad Project"], err=err
    )
    assert code == 2 and "invalid BigQuery project name" in err.getvalue()


def test_pipeline_reads_declared_retention_from_the_example_contract() -> None:
    from pipeline.graphs.options import contract_retention

    retention = contract_retention(
        str(Path(__file__).resolve().parents[2] / "templates" / "contracts" / "example.yaml")
    )
    assert retention["commerce.square_payments"] == 2557
    assert retention["customer_memory.interactions"] == 731
    assert retention["customer_memory"] == 731
    assert "commerce.square_items" not in retention  # not partitioned: nothing expires
