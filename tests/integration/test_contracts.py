"""``opentrack schema check|plan|apply`` against the real BigQuery emulator (nothing mocked).

One warehouse is built with every kind of drift (missing dataset, missing table, missing
field, extra field, type, mode, partitioning, retention, clustering, schema version label,
labels) next to unsafe ones the emulator would accept silently (REQUIRED additions,
STRING -> INT64, NULLABLE -> REQUIRED, rename, drop): the planner must refuse those itself.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud import bigquery

from pipeline.commands import schema as schema_cli
from pipeline.warehouse.contracts import (
    CLUSTERING_DRIFT,
    EXTRA_FIELD,
    MISSING_DATASET,
    MISSING_FIELD,
    MISSING_TABLE,
    MODE_DRIFT,
    PARTITIONING_DRIFT,
    RENAMED_FIELD,
    RETENTION_DRIFT,
    TYPE_DRIFT,
    VERSION_DRIFT,
    diff,
    load_contract,
)
from pipeline.warehouse.contracts.apply import read_warehouse

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "templates" / "contracts" / "example.yaml"
DAY_MS = 86_400_000
_names = itertools.count()
S = bigquery.SchemaField


def fresh(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def schema(local_stack, bq_client: bigquery.Client) -> Run:
    """``opentrack schema <argv>`` against the session's emulator: (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = schema_cli.main(
            [*argv, "--bigquery_project", bq_client.project,
             "--bigquery_endpoint", local_stack.bigquery_endpoint],
            out=out,
            err=err,
        )  # fmt: skip
        return code, out.getvalue(), err.getvalue()

    return run


CONTRACT = """
datasets:
  - name: {shop}
    location: US
    description: The shop.
    labels: {{team: data}}
    tables:
      - name: orders
        description: Orders.
        schema_version: "2.0"
        versioning: true
        partitioning: {{field: created_at, type: DAY}}
        retention: 90d
        clustering: [customer_id, status]
        fields:
          - {{name: id, type: STRING, mode: REQUIRED}}
          - {{name: customer_id, type: STRING}}
          - {{name: status, type: STRING, description: Order status.}}
          - {{name: amount, type: NUMERIC}}
          - {{name: quantity, type: FLOAT64}}
          - {{name: note, type: STRING}}
          - {{name: code, type: INT64}}
          - {{name: email, type: STRING, mode: REQUIRED}}
          - {{name: coupon, type: STRING, mode: REQUIRED}}
          - name: shipping
            type: RECORD
            fields:
              - {{name: city, type: STRING}}
              - {{name: zip, type: STRING}}
          - {{name: total, type: FLOAT64, renamed_from: total_old}}
      - name: events
        partitioning: {{field: sent_at}}
        fields:
          - {{name: id, type: STRING}}
          - {{name: received_at, type: TIMESTAMP}}
          - {{name: sent_at, type: TIMESTAMP}}
      - name: refunds
        schema_version: "1.0"
        partitioning: {{field: refunded_at}}
        retention: 7y
        fields:
          - {{name: id, type: STRING, mode: REQUIRED}}
          - {{name: refunded_at, type: TIMESTAMP}}
  - name: {new}
    location: US
    retention: 2y
    tables:
      - name: visits
        versioning: true
        partitioning: {{field: created_at}}
        clustering: [page]
        fields:
          - {{name: page, type: STRING}}
"""

ORDERS_LIVE = [
    S("id", "STRING", mode="REQUIRED"),
    S("customer_id", "STRING"),
    S("amount", "INTEGER"),
    S("quantity", "INTEGER"),
    S("note", "STRING", mode="REQUIRED"),
    S("code", "STRING"),
    S("email", "STRING"),
    S("shipping", "RECORD", fields=[S("city", "STRING")]),
    S("total_old", "FLOAT"),
    S("legacy", "STRING"),
    S("created_at", "TIMESTAMP"),
    S("updated_at", "TIMESTAMP"),
    S("version", "STRING"),
]

# (kind, target) of every drift, and which of them apply must leave (refused).
SAFE = {
    (MISSING_DATASET, "{new}"),
    (MISSING_TABLE, "{new}.visits"),
    (MISSING_TABLE, "{shop}.refunds"),
    (MISSING_FIELD, "{shop}.orders.status"),
    (TYPE_DRIFT, "{shop}.orders.amount"),
    (TYPE_DRIFT, "{shop}.orders.quantity"),
    (MODE_DRIFT, "{shop}.orders.note"),
    (RETENTION_DRIFT, "{shop}.orders"),
    (CLUSTERING_DRIFT, "{shop}.orders"),
    (VERSION_DRIFT, "{shop}.orders"),
    ("dataset labels drift", "{shop}"),
}
NESTED = {(MISSING_FIELD, "{shop}.orders.shipping.zip")}
REFUSED = {
    (EXTRA_FIELD, "{shop}.orders.legacy"),
    (TYPE_DRIFT, "{shop}.orders.code"),
    (MODE_DRIFT, "{shop}.orders.email"),
    (MISSING_FIELD, "{shop}.orders.coupon"),
    (RENAMED_FIELD, "{shop}.orders.total_old"),
    (PARTITIONING_DRIFT, "{shop}.events"),
}


def build_drifted_warehouse(
    bq_client: bigquery.Client, tmp_path: Path, nested_drift: bool = True
) -> tuple[Path, dict[str, str]]:
    """The warehouse of CONTRACT with every drift of SAFE and REFUSED.

    ``nested_drift=False`` gives ``shipping`` its ``zip`` already: local-bigquery 0.4.0
    silently ignores new nested fields in a schema patch (its ``catalog/tables.py`` adds
    top-level columns only), where BigQuery adds them. Apply's own verification reports
    such a change as FAILED instead of claiming it; the patch it sends is unit-tested.
    """
    names = {"shop": fresh("contract_shop"), "new": fresh("contract_new")}
    project = bq_client.project
    dataset = bigquery.Dataset(f"{project}.{names['shop']}")
    dataset.location = "US"
    dataset.description = "The shop."
    dataset.labels = {"team": "marketing"}
    bq_client.create_dataset(dataset)

    schema = ORDERS_LIVE
    if not nested_drift:
        shipping = S("shipping", "RECORD", fields=[S("city", "STRING"), S("zip", "STRING")])
        schema = [shipping if f.name == "shipping" else f for f in ORDERS_LIVE]
    orders = bigquery.Table(f"{project}.{names['shop']}.orders", schema=schema)
    orders.time_partitioning = bigquery.TimePartitioning(
        type_="DAY", field="created_at", expiration_ms=30 * DAY_MS
    )
    orders.clustering_fields = ["customer_id"]
    orders.labels = {"schema_version": "1_0", "owner": "shop"}
    orders.description = "Orders."
    bq_client.create_table(orders)
    errors = bq_client.insert_rows_json(
        orders,
        [{"id": "o-1", "amount": 42, "quantity": 3, "note": "gift", "code": "A7",
          "shipping": {"city": "Paris"}, "total_old": 9.5, "legacy": "x",
          "created_at": "2026-11-01T10:00:00Z"}],
    )  # fmt: skip
    assert errors == []

    events = bigquery.Table(
        f"{project}.{names['shop']}.events",
        schema=[S("id", "STRING"), S("received_at", "TIMESTAMP"), S("sent_at", "TIMESTAMP")],
    )
    events.time_partitioning = bigquery.TimePartitioning(type_="DAY", field="received_at")
    bq_client.create_table(events)

    path = tmp_path / "contract.yaml"
    path.write_text(CONTRACT.format(**names))
    return path, names


def drift_keys(bq_client: bigquery.Client, path: Path) -> set[tuple[str, str]]:
    contract = load_contract(path)
    return {
        (d.kind, d.target)
        for d in diff(contract, read_warehouse(bq_client, bq_client.project, contract))
    }


def expand(keys: set[tuple[str, str]], names: dict[str, str]) -> set[tuple[str, str]]:
    return {(kind, target.format(**names)) for kind, target in keys}


def test_check_reports_every_kind_of_drift(schema: Run, bq_client, tmp_path) -> None:
    path, names = build_drifted_warehouse(bq_client, tmp_path)

    code, out, err = schema("check", "--contracts", str(path))

    assert code == 1, err
    assert drift_keys(bq_client, path) == expand(SAFE | REFUSED | NESTED, names)
    shop, new = names["shop"], names["new"]
    expected_lines = [
        f"dataset {new} does not exist",
        f"table {shop}.refunds does not exist",
        "column status (STRING) is missing",
        "column shipping.zip (STRING) is missing",
        "column legacy (STRING) is not in the contract",
        "column amount is INT64, contract says NUMERIC",
        "column code is STRING, contract says INT64",
        "column note is REQUIRED, contract says NULLABLE",
        "column email is NULLABLE, contract says REQUIRED",
        "partitioning: live DAY(received_at), contract DAY(sent_at)",
        "partitions: live expire after 30 days, contract expire after 90 days",
        "clustering: live (customer_id), contract (customer_id, status)",
        "label schema_version: live 1_0, contract 2_0",
        "labels: live team=marketing, contract team=data",
        "column total_old should be renamed to total",
    ]
    for line in expected_lines:
        assert line in out, f"{line!r} not in:\n{out}"
    kinds = (MISSING_DATASET, MISSING_TABLE, MISSING_FIELD, EXTRA_FIELD, TYPE_DRIFT,
             MODE_DRIFT, PARTITIONING_DRIFT, RETENTION_DRIFT, CLUSTERING_DRIFT,
             VERSION_DRIFT)  # fmt: skip
    for kind in kinds:
        assert kind in out
    assert out.strip().splitlines()[-1].startswith("DRIFT: 18 drifts")


def test_plan_numbers_safe_changes_and_refusals_and_changes_nothing(
    schema: Run, bq_client, tmp_path
) -> None:
    path, names = build_drifted_warehouse(bq_client, tmp_path)
    shop = names["shop"]
    before = bq_client.get_table(f"{bq_client.project}.{shop}.orders")

    code, out, err = schema("plan", "--contracts", str(path))

    assert code == 1, err
    lines = out.strip().splitlines()
    assert lines[0].endswith("12 to apply, 6 refused")
    steps = [line.split(". ", 1)[1] for line in lines[1:]]
    assert [line.split(".", 1)[0].strip() for line in lines[1:]] == [str(n) for n in range(1, 19)]
    safe = [s for s in steps if not s.startswith("REFUSED")]
    refused = [s for s in steps if s.startswith("REFUSED")]
    for expected in [
        f"set labels team=data on {shop}",
        f"add column {shop}.orders.status STRING",
        f"add column {shop}.orders.shipping.zip STRING",
        f"widen column {shop}.orders.amount from INT64 to NUMERIC in place",
        f"widen column {shop}.orders.quantity from INT64 to FLOAT64 in place",
        f"relax column {shop}.orders.note from REQUIRED to NULLABLE",
        f"set the partition expiration of {shop}.orders: partitions expire after 90 days",
        f"cluster {shop}.orders by customer_id, status",
        f"set label schema_version=2_0 on {shop}.orders",
        (
            f"create table {shop}.refunds (2 columns; partitioned by DAY(refunded_at); "
            "partitions expire after 2557 days; labels schema_version=1_0)"
        ),
        f"create dataset {names['new']} (location US; default partitions expire after 731 days)",
        (
            f"create table {names['new']}.visits (4 columns; partitioned by DAY(created_at); "
            "partitions expire after 731 days; clustered by page)"
        ),
    ]:
        assert any(s.startswith(expected) for s in safe), f"{expected!r} not in:\n{out}"
    for expected, reason in [
        (f"drop column {shop}.orders.legacy STRING", "apply never drops"),
        (
            f"change column {shop}.orders.code from STRING to INT64",
            "not one of BigQuery's in-place widenings",
        ),
        (f"change column {shop}.orders.email from NULLABLE to REQUIRED", "never tightens a mode"),
        (f"add column {shop}.orders.coupon STRING REQUIRED", "existing rows have no value"),
        (f"rename column {shop}.orders.total_old to total", "apply never renames"),
        (f"re-partition {shop}.events from DAY(received_at) to DAY(sent_at)", "needs a rewrite"),
    ]:
        match = [s for s in refused if s.startswith(f"REFUSED {expected}: ")]
        assert match and reason in match[0], f"{expected!r} / {reason!r} not in:\n{out}"
    after = bq_client.get_table(f"{bq_client.project}.{shop}.orders")
    assert after.etag == before.etag
    assert not _dataset_exists(bq_client, names["new"])


def test_apply_makes_the_safe_changes_and_nothing_unsafe(schema: Run, bq_client, tmp_path) -> None:
    path, names = build_drifted_warehouse(bq_client, tmp_path, nested_drift=False)
    shop, new, project = names["shop"], names["new"], bq_client.project
    events_before = bq_client.get_table(f"{project}.{shop}.events")

    code, out, err = schema("apply", "--contracts", str(path))

    assert code == 1, out + err  # the refused drift remains
    assert "FAILED" not in out
    after_check = out.split("Check after apply:", 1)[1]
    assert drift_keys(bq_client, path) == expand(REFUSED, names)
    for kind in (MISSING_DATASET, MISSING_TABLE, RETENTION_DRIFT, CLUSTERING_DRIFT, VERSION_DRIFT):
        assert kind not in after_check
    assert "DRIFT: 6 drifts" in after_check

    orders = bq_client.get_table(f"{project}.{shop}.orders")
    columns = {f.name: f for f in orders.schema}
    assert (columns["status"].field_type, columns["status"].mode) == ("STRING", "NULLABLE")
    assert columns["status"].description == "Order status."
    assert columns["amount"].field_type == "NUMERIC"
    assert columns["quantity"].field_type == "FLOAT"
    assert columns["note"].mode == "NULLABLE"
    assert [f.name for f in columns["shipping"].fields] == ["city", "zip"]
    assert orders.time_partitioning.field == "created_at"
    assert orders.time_partitioning.expiration_ms == 90 * DAY_MS
    assert orders.clustering_fields == ["customer_id", "status"]
    assert orders.labels == {"schema_version": "2_0", "owner": "shop"}
    # Unsafe changes were not made, although the emulator would have taken them:
    assert columns["code"].field_type == "STRING"
    assert columns["email"].mode == "NULLABLE"
    assert "coupon" not in columns and "total" not in columns
    assert "legacy" in columns and "total_old" in columns
    events = bq_client.get_table(f"{project}.{shop}.events")
    assert events.time_partitioning.field == "received_at"
    assert events.etag == events_before.etag
    # The row written before is intact (amount widened in place, not rewritten):
    row = next(iter(bq_client.query(f"SELECT * FROM `{project}.{shop}.orders`").result()))
    assert (row["id"], float(row["amount"]), row["quantity"], row["note"], row["legacy"]) == (
        "o-1", 42.0, 3.0, "gift", "x",
    )  # fmt: skip
    assert bq_client.get_dataset(f"{project}.{shop}").labels == {"team": "data"}

    refunds = bq_client.get_table(f"{project}.{shop}.refunds")
    assert refunds.time_partitioning.expiration_ms == 2557 * DAY_MS
    assert {f.name: f.mode for f in refunds.schema} == {"id": "REQUIRED", "refunded_at": "NULLABLE"}
    created = bq_client.get_dataset(f"{project}.{new}")
    assert created.default_partition_expiration_ms == 731 * DAY_MS
    visits = bq_client.get_table(f"{project}.{new}.visits")
    assert [f.name for f in visits.schema] == ["page", "created_at", "updated_at", "version"]
    assert visits.time_partitioning.field == "created_at"
    assert visits.time_partitioning.expiration_ms == 731 * DAY_MS
    assert visits.clustering_fields == ["page"]

    # A second apply has nothing left to do and still refuses the same changes.
    code, again, _ = schema("apply", "--contracts", str(path))
    assert code == 1
    assert "nothing to apply" in again
    assert bq_client.get_table(f"{project}.{shop}.orders").etag == orders.etag


def test_apply_removes_expiration_and_clustering_and_relabels(
    schema: Run, bq_client, tmp_path
) -> None:
    dataset = fresh("contract_loosen")
    project = bq_client.project
    spec = bigquery.Dataset(f"{project}.{dataset}")
    spec.default_partition_expiration_ms = 10 * DAY_MS
    bq_client.create_dataset(spec)
    table = bigquery.Table(f"{project}.{dataset}.logs", schema=[S("at", "DATE"), S("k", "STRING")])
    table.time_partitioning = bigquery.TimePartitioning(field="at", expiration_ms=10 * DAY_MS)
    table.clustering_fields = ["k"]
    table.description = "old"
    bq_client.create_table(table)
    path = tmp_path / "loosen.yaml"
    path.write_text(
        f"datasets:\n  - name: {dataset}\n    description: Logs.\n    tables:\n"
        "      - name: logs\n        description: new\n        partitioning: {field: at}\n"
        "        retention: none\n"
        "        fields: [{name: at, type: DATE}, {name: k, type: STRING}]\n"
    )

    code, out, err = schema("apply", "--contracts", str(path))

    assert code == 0, out + err
    assert out.rstrip().endswith("OK: the warehouse matches the contract")
    live = bq_client.get_table(f"{project}.{dataset}.logs")
    assert live.time_partitioning.expiration_ms is None
    assert live.clustering_fields is None
    assert live.description == "new"
    live_dataset = bq_client.get_dataset(f"{project}.{dataset}")
    assert live_dataset.default_partition_expiration_ms is None
    assert live_dataset.description == "Logs."


class _RivalClient(bigquery.Client):
    """A real client whose first table update is raced by a rival update, as a pipeline
    worker adding a column between apply's read and apply's patch would race it."""

    raced = False

    def update_table(self, table, fields, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self.raced:
            self.raced = True
            rival = super().get_table(table.reference)
            rival.schema = list(rival.schema) + [S("from_pipeline", "STRING")]
            super().update_table(rival, ["schema"])
        return super().update_table(table, fields, *args, **kwargs)


def test_apply_patches_under_the_table_etag_and_replans_after_a_race(
    local_stack, bq_client, tmp_path
) -> None:
    from google.auth.credentials import AnonymousCredentials

    from pipeline.warehouse.contracts.apply import apply_contract

    dataset = fresh("contract_race")
    project = bq_client.project
    bq_client.create_dataset(f"{project}.{dataset}")
    bq_client.create_table(bigquery.Table(f"{project}.{dataset}.t", schema=[S("id", "STRING")]))
    path = tmp_path / "race.yaml"
    path.write_text(
        f"datasets:\n  - name: {dataset}\n    tables:\n      - name: t\n"
        "        fields: [{name: id, type: STRING}, {name: added, type: STRING}, "
        "{name: from_pipeline, type: STRING}]\n"
    )
    client = _RivalClient(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": local_stack.bigquery_endpoint},
    )

    result = apply_contract(client, project, load_contract(path))

    assert client.raced and result.failed == []
    names = [f.name for f in bq_client.get_table(f"{project}.{dataset}.t").schema]
    # The stale patch was refused with 412; the re-plan kept the rival's column once.
    assert names == ["id", "from_pipeline", "added"]
    assert result.done == [f"add column {dataset}.t.added STRING"]
    client.close()


def test_apply_on_the_example_contract_creates_everything(schema: Run, bq_client) -> None:
    project = bq_client.project
    contract = load_contract(EXAMPLE)

    code, out, err = schema("apply", "--contracts", str(EXAMPLE))

    assert code == 0, out + err
    assert out.rstrip().endswith("OK: the warehouse matches the contract")
    for dataset in contract.datasets:
        live = bq_client.get_dataset(f"{project}.{dataset.name}")
        assert live.location == "US"
        tables = {t.table_id for t in bq_client.list_tables(live)}
        assert tables == {t.name for t in dataset.tables}
    payments = bq_client.get_table(f"{project}.commerce.square_payments")
    assert payments.time_partitioning.type_ == "DAY"
    assert payments.time_partitioning.field == "created_at"
    assert payments.time_partitioning.expiration_ms == 2557 * DAY_MS  # 7 years
    assert payments.clustering_fields == ["customer_id", "status"]
    assert payments.labels == {"schema_version": "1_1"}
    columns = [f.name for f in payments.schema]
    assert columns[-3:] == ["created_at", "updated_at", "version"]
    assert not any(c.lower().startswith("_partition") for c in columns)
    for name, days in [("commerce.memberships", 2557), ("commerce.raffles", 2557),
                       ("commerce.raffle_tickets", 2557),
                       ("customer_memory.customer_profiles", 731),
                       ("customer_memory.interactions", 731)]:  # fmt: skip
        assert (
            bq_client.get_table(f"{project}.{name}").time_partitioning.expiration_ms
            == days * DAY_MS
        )
    assert (
        bq_client.get_table(f"{project}.commerce.raffle_tickets").time_partitioning.field
        == "purchase_date"
    )
    assert (
        bq_client.get_table(f"{project}.customer_memory.interactions").time_partitioning.field
        == "timestamp"
    )
    items = bq_client.get_table(f"{project}.commerce.square_items")
    assert items.time_partitioning is None
    assert (
        bq_client.get_dataset(f"{project}.commerce").default_partition_expiration_ms
        == 2557 * DAY_MS
    )
    assert bq_client.get_dataset(f"{project}.analytics").default_partition_expiration_ms is None
    transactions = bq_client.get_table(f"{project}.analytics.lightspeed_transactions")
    line_items = next(f for f in transactions.schema if f.name == "line_items")
    assert (line_items.field_type, line_items.mode) == ("RECORD", "REPEATED")

    code, out, _ = schema("check", "--contracts", str(EXAMPLE))
    assert code == 0 and "OK: the warehouse matches the contract" in out


def test_an_unreachable_endpoint_exits_2(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    out, err = io.StringIO(), io.StringIO()

    code = schema_cli.main(
        ["check", "--contracts", str(EXAMPLE), "--bigquery_project", "test-project",
         "--bigquery_endpoint", f"http://127.0.0.1:{port}"],
        out=out,
        err=err,
    )  # fmt: skip

    assert code == 2
    assert f"cannot use BigQuery at http://127.0.0.1:{port}" in err.getvalue()
    assert out.getvalue() == ""


def _dataset_exists(bq_client: bigquery.Client, dataset: str) -> bool:
    return any(d.dataset_id == dataset for d in bq_client.list_datasets())
