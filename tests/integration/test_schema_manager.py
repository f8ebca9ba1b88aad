"""The schema manager against the real BigQuery emulator (nothing mocked)."""

from __future__ import annotations

import itertools
import threading

import pytest
from google.api_core.exceptions import PreconditionFailed
from google.cloud import bigquery

from pipeline.warehouse.client import CONFLICT_BACKOFF_INITIAL_S, CONFLICT_BACKOFF_MAX_S
from pipeline.warehouse.manager import (
    MAX_ATTEMPTS,
    SCHEMA_VERSION_LABEL,
    SchemaManager,
    TableSettings,
)
from pipeline.warehouse.schema import plan_schema

_names = itertools.count()
BASE = {"id": "STRING", "timestamp": "TIMESTAMP", "user_id": "STRING", "amount": "INTEGER"}


def fresh_dataset() -> str:
    return f"manager_{next(_names)}_{threading.get_ident() % 1000}"


def manager(bq_client: bigquery.Client, **settings: object) -> SchemaManager:
    return SchemaManager(bq_client, bq_client.project, TableSettings(**settings))  # type: ignore[arg-type]


def rows(bq_client: bigquery.Client, dataset: str, table: str, order: str = "id") -> list[dict]:
    sql = f"SELECT * FROM `{bq_client.project}.{dataset}.{table}` ORDER BY {order}"
    return [dict(row) for row in bq_client.query(sql).result()]


def insert(bq_client: bigquery.Client, dataset: str, table: str, batch: list[dict]) -> None:
    errors = bq_client.insert_rows_json(f"{bq_client.project}.{dataset}.{table}", batch)
    assert errors == []


def test_creates_dataset_and_partitioned_table_with_expiration_clustering_labels(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(
        bq_client, location="US", partition_expiration_days=30, clustering_fields=("user_id",)
    )
    result = schema_manager.ensure(dataset, "order_completed", BASE)

    assert result.changed and result.schema == BASE and result.refused == {}
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.order_completed")
    assert {f.name: (f.field_type, f.mode) for f in table.schema} == {
        name: (kind, "NULLABLE") for name, kind in BASE.items()
    }
    assert table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.field == "timestamp"
    assert table.time_partitioning.expiration_ms == 30 * 86_400_000
    assert table.clustering_fields == ["user_id"]
    assert table.labels == {"managed_by": "opentrack", SCHEMA_VERSION_LABEL: "1"}
    assert bq_client.get_dataset(f"{bq_client.project}.{dataset}").labels == {
        "managed_by": "opentrack"
    }


def test_rows_that_fit_cost_no_api_call(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(bq_client)
    schema_manager.ensure(dataset, "pages", BASE)
    before = sum(schema_manager.api_calls.values())
    for _ in range(50):
        schema_manager.ensure(dataset, "pages", {"id": "STRING", "amount": "INTEGER"})
        schema_manager.ensure(dataset, "pages", {"amount": "INTEGER"})
    assert sum(schema_manager.api_calls.values()) == before


def test_new_properties_add_nullable_columns_in_one_update(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(bq_client)
    schema_manager.ensure(dataset, "signed_up", BASE)
    insert(bq_client, dataset, "signed_up", [{"id": "a", "amount": 1}])
    updates_before = schema_manager.api_calls["update_table"]

    wanted = {**BASE, "plan": "STRING", "trial": "BOOLEAN", "seats": "INTEGER"}
    result = schema_manager.ensure(dataset, "signed_up", wanted)

    assert schema_manager.api_calls["update_table"] == updates_before + 1
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.signed_up")
    assert {f.name: f.field_type for f in table.schema} == wanted == result.schema
    assert all(f.mode == "NULLABLE" for f in table.schema)
    assert table.labels[SCHEMA_VERSION_LABEL] == "2"
    assert rows(bq_client, dataset, "signed_up")[0]["amount"] == 1


def test_integer_widens_to_float_in_place_and_keeps_rows(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(bq_client, partition_expiration_days=7)
    schema_manager.ensure(dataset, "product_added", BASE)
    insert(
        bq_client, dataset, "product_added", [{"id": "a", "amount": 10}, {"id": "b", "amount": 3}]
    )

    result = schema_manager.ensure(dataset, "product_added", {**BASE, "amount": "FLOAT"})

    assert result.schema["amount"] == "FLOAT"
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.product_added")
    assert {f.name: f.field_type for f in table.schema}["amount"] == "FLOAT"
    insert(bq_client, dataset, "product_added", [{"id": "c", "amount": 2.5}])
    assert [(r["id"], r["amount"]) for r in rows(bq_client, dataset, "product_added")] == [
        ("a", 10.0),
        ("b", 3.0),
        ("c", 2.5),
    ]
    assert table.time_partitioning.expiration_ms == 7 * 86_400_000


def test_an_integer_column_holding_values_past_2pow53_goes_string_not_float(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(bq_client)
    schema_manager.ensure(dataset, "product_added", BASE)
    insert(bq_client, dataset, "product_added", [
        {"id": "a", "amount": 4611686018427387905}, {"id": "b", "amount": -(2**53) - 1},
        {"id": "c", "amount": 3},
    ])  # fmt: skip

    result = schema_manager.ensure(dataset, "product_added", {**BASE, "amount": "FLOAT"})

    # FLOAT64 would have read 4.611686018427388e+18: the column is text, every digit kept.
    assert result.schema["amount"] == "STRING"
    assert schema_manager.api_calls["widened_to_string_for_exactness"] == 1
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.product_added")
    assert {f.name: f.field_type for f in table.schema}["amount"] == "STRING"
    assert [(r["id"], r["amount"]) for r in rows(bq_client, dataset, "product_added")] == [
        ("a", "4611686018427387905"),
        ("b", "-9007199254740993"),
        ("c", "3"),
    ]


def test_a_float_column_meeting_an_integer_past_2pow53_goes_string(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(bq_client)
    schema_manager.ensure(dataset, "product_added", {**BASE, "amount": "FLOAT"})
    insert(bq_client, dataset, "product_added", [{"id": "a", "amount": 2.5}])

    result = schema_manager.ensure(
        dataset, "product_added", {**BASE, "amount": "INTEGER_BEYOND_FLOAT64"}
    )

    assert result.schema["amount"] == "STRING"
    assert rows(bq_client, dataset, "product_added")[0]["amount"] == "2.5"


def test_widening_to_string_rewrites_and_keeps_rows_and_table_settings(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(
        bq_client, partition_expiration_days=400, clustering_fields=("user_id",)
    )
    wanted = {**BASE, "paid": "BOOLEAN", "at": "TIMESTAMP"}
    schema_manager.ensure(dataset, "video", wanted)
    insert(
        bq_client,
        dataset,
        "video",
        [
            {
                "id": "a",
                "amount": 10,
                "paid": True,
                "at": "2026-11-01T10:00:00.000000Z",
                "timestamp": "2026-11-01T10:00:00.000000Z",
                "user_id": "u",
            },
            {"id": "b", "amount": 3, "paid": False, "timestamp": "2026-11-02T10:00:00.000000Z"},
        ],
    )
    before = bq_client.get_table(f"{bq_client.project}.{dataset}.video")

    result = schema_manager.ensure(
        dataset, "video", {**wanted, "amount": "STRING", "paid": "STRING", "at": "STRING"}
    )

    assert {c: result.schema[c] for c in ("amount", "paid", "at")} == {
        "amount": "STRING",
        "paid": "STRING",
        "at": "STRING",
    }
    after = bq_client.get_table(f"{bq_client.project}.{dataset}.video")
    assert {f.name: f.field_type for f in after.schema} == result.schema
    assert after.time_partitioning.field == "timestamp"
    assert after.time_partitioning.expiration_ms == 400 * 86_400_000
    assert after.clustering_fields == ["user_id"]
    assert after.description == before.description
    assert after.labels["managed_by"] == "opentrack"
    assert int(after.labels[SCHEMA_VERSION_LABEL]) > int(before.labels[SCHEMA_VERSION_LABEL])
    insert(bq_client, dataset, "video", [{"id": "c", "amount": "12 minutes", "paid": "maybe"}])
    kept = rows(bq_client, dataset, "video")
    assert [(r["id"], r["amount"], r["paid"]) for r in kept] == [
        ("a", "10", "true"),
        ("b", "3", "false"),
        ("c", "12 minutes", "maybe"),
    ]
    assert kept[0]["at"] == "2026-11-01T10:00:00.000000Z"


class _StaleFirstRead(SchemaManager):
    """A manager whose first read returns a table fetched before a rival's change,
    as a worker that read just before another worker patched the table would."""

    def __init__(self, stale: bigquery.Table, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._stale: bigquery.Table | None = stale

    def _fetch(self, dataset: str, table: str) -> bigquery.Table | None:
        if self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return super()._fetch(dataset, table)


def test_two_managers_racing_end_with_the_union_of_both_changes(bq_client) -> None:
    dataset = fresh_dataset()
    first = manager(bq_client)
    first.ensure(dataset, "identifies", BASE)
    stale = bq_client.get_table(f"{bq_client.project}.{dataset}.identifies")
    first.ensure(dataset, "identifies", {**BASE, "email": "STRING"})

    # The emulator refuses the stale ETag for real:
    stale_copy = bigquery.Table.from_api_repr(stale.to_api_repr())
    stale_copy.schema = list(stale.schema) + [bigquery.SchemaField("x", "STRING")]
    with pytest.raises(PreconditionFailed):
        bq_client.update_table(stale_copy, ["schema"])

    slept: list[float] = []
    second = _StaleFirstRead(
        stale, bq_client, bq_client.project, TableSettings(), sleep=slept.append
    )
    result = second.ensure(dataset, "identifies", {**BASE, "plan": "STRING"})

    assert second.api_calls["conflict_retry"] == 1
    assert len(slept) == 1 and 0 <= slept[0] <= CONFLICT_BACKOFF_INITIAL_S
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.identifies")
    assert {f.name for f in table.schema} == set(BASE) | {"email", "plan"}
    assert set(result.schema) == set(BASE) | {"email", "plan"}


def test_columns_past_the_limit_are_refused_not_added(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = SchemaManager(bq_client, bq_client.project, max_columns=6)
    schema_manager.ensure(dataset, "wide", BASE)
    wanted = {**BASE, "a": "STRING", "b": "STRING", "c": "STRING"}

    result = schema_manager.ensure(dataset, "wide", wanted)

    assert set(result.schema) == set(BASE) | {"a", "b"}
    assert list(result.refused) == ["c"]
    assert plan_schema(result.schema, wanted, 6).refused.keys() == {"c"}
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.wide")
    assert len(table.schema) == 6


def test_metadata_updates_are_paced_per_table(bq_client) -> None:
    dataset = fresh_dataset()
    slept: list[float] = []
    now = [0.0]
    schema_manager = SchemaManager(
        bq_client, bq_client.project, clock=lambda: now[0], sleep=slept.append
    )
    schema_manager.ensure(dataset, "burst", BASE)
    for index in range(6):
        schema_manager.ensure(dataset, "burst", {**BASE, f"p{index}": "STRING"})
    # 7 updates in no (fake) time: the 6th and 7th had to wait for the 10 s window.
    assert len(slept) == 2 and all(pause > 0 for pause in slept)


def test_contract_retention_applies_at_creation_table_over_dataset_over_option(bq_client) -> None:
    dataset = fresh_dataset()
    schema_manager = manager(
        bq_client,
        partition_expiration_days=30,
        retention_days={f"{dataset}.payments": 2557, dataset: 731, f"{dataset}.forever": None},
    )
    for table in ("payments", "interactions", "forever"):
        schema_manager.ensure(dataset, table, BASE)
    other = fresh_dataset()
    schema_manager.ensure(other, "pages", BASE)

    def expiration(ds: str, table: str) -> int | None:
        return bq_client.get_table(
            f"{bq_client.project}.{ds}.{table}"
        ).time_partitioning.expiration_ms

    assert expiration(dataset, "payments") == 2557 * 86_400_000  # the table's own
    assert expiration(dataset, "interactions") == 731 * 86_400_000  # its dataset's default
    assert expiration(dataset, "forever") is None  # declared: never
    assert expiration(other, "pages") == 30 * 86_400_000  # --partition_expiration_days


class _AlwaysStale(SchemaManager):
    """A manager that always reads the table as it was before a rival's change: every
    patch it sends carries an old ETag and is refused with 412."""

    def __init__(self, stale: bigquery.Table, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._stale = stale

    def _fetch(self, dataset: str, table: str) -> bigquery.Table | None:
        return bigquery.Table.from_api_repr(self._stale.to_api_repr())


def test_conflict_retries_back_off_exponentially_with_jitter_then_give_up(bq_client) -> None:
    dataset = fresh_dataset()
    first = manager(bq_client)
    first.ensure(dataset, "identifies", BASE)
    stale = bq_client.get_table(f"{bq_client.project}.{dataset}.identifies")
    first.ensure(dataset, "identifies", {**BASE, "email": "STRING"})
    slept: list[float] = []
    now = [0.0]

    def sleep(pause: float) -> None:
        slept.append(pause)
        now[0] += pause

    racing = _AlwaysStale(
        stale, bq_client, bq_client.project, TableSettings(), clock=lambda: now[0], sleep=sleep
    )

    with pytest.raises(RuntimeError, match="still racing after 6 attempts"):
        racing.ensure(dataset, "identifies", {**BASE, "plan": "STRING"})

    # One pause between each two of the 6 attempts, each within its doubling bound, and
    # counted; then the 6th patch waits for the table's update pacing (5 per 10 s).
    assert racing.api_calls["conflict_retry"] == MAX_ATTEMPTS - 1
    backoffs, pacing = slept[: MAX_ATTEMPTS - 1], slept[MAX_ATTEMPTS - 1 :]
    bounds = [min(CONFLICT_BACKOFF_INITIAL_S * 2**k, CONFLICT_BACKOFF_MAX_S) for k in range(5)]
    assert all(0 <= pause <= bound for pause, bound in zip(backoffs, bounds, strict=True))
    assert len(set(backoffs)) > 1  # jittered, not in step with a rival's retries
    assert len(pacing) <= 1 and all(0 < pause <= 10 for pause in pacing)
    table = bq_client.get_table(f"{bq_client.project}.{dataset}.identifies")
    assert "plan" not in {f.name for f in table.schema}
