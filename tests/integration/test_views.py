"""Dedup views on the real BigQuery emulator, made by the schema manager (nothing mocked)."""

from __future__ import annotations

import itertools
import threading

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from pipeline.warehouse import views
from pipeline.warehouse.manager import SchemaManager, TableSettings
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE

_names = itertools.count()
EVENT = {
    "id": "STRING",
    "user_id": "STRING",
    "timestamp": "TIMESTAMP",
    "loaded_at": "TIMESTAMP",
    "plan": "STRING",
}


def fresh_dataset() -> str:
    return f"views_{next(_names)}_{threading.get_ident() % 1000}"


def ref(bq_client: bigquery.Client, dataset: str, table: str) -> str:
    return f"{bq_client.project}.{dataset}.{table}"


def insert(bq_client: bigquery.Client, dataset: str, table: str, batch: list[dict]) -> None:
    assert bq_client.insert_rows_json(ref(bq_client, dataset, table), batch) == []


def view_rows(bq_client: bigquery.Client, dataset: str, table: str) -> list[dict]:
    sql = f"SELECT * FROM `{ref(bq_client, dataset, table)}_view` ORDER BY id"
    return [dict(row) for row in bq_client.query(sql).result()]


def exists(bq_client: bigquery.Client, dataset: str, table: str) -> bool:
    try:
        bq_client.get_table(ref(bq_client, dataset, table))
    except NotFound:
        return False
    return True


def test_view_shows_each_id_once_with_its_latest_load(bq_client) -> None:
    dataset = fresh_dataset()
    manager = SchemaManager(bq_client, bq_client.project, TableSettings())
    manager.ensure(dataset, "order_completed", EVENT)
    assert manager.api_calls["create_view"] == 1
    insert(
        bq_client,
        dataset,
        "order_completed",
        [
            {"id": "m-1", "plan": "first", "loaded_at": "2026-11-01T10:00:00Z"},
            {"id": "m-2", "plan": "only", "loaded_at": "2026-11-01T10:00:00Z"},
            {"id": "m-1", "plan": "replayed", "loaded_at": "2026-11-02T09:00:00Z"},
            {"id": "m-3", "plan": "later", "loaded_at": "2026-11-03T00:00:00Z"},
            {"id": "m-3", "plan": "earlier", "loaded_at": "2026-11-01T00:00:00Z"},
        ],
    )

    shown = view_rows(bq_client, dataset, "order_completed")

    assert [(row["id"], row["plan"]) for row in shown] == [
        ("m-1", "replayed"),
        ("m-2", "only"),
        ("m-3", "later"),
    ]
    assert set(shown[0]) == set(EVENT)  # the rank column is not exposed
    view = bq_client.get_table(ref(bq_client, dataset, "order_completed_view"))
    assert view.table_type == "VIEW"


def test_ties_on_loaded_at_are_broken_on_the_row_text(bq_client) -> None:
    dataset = fresh_dataset()
    SchemaManager(bq_client, bq_client.project).ensure(dataset, "pages", EVENT)
    same_time = "2026-11-01T10:00:00Z"
    insert(
        bq_client,
        dataset,
        "pages",
        [{"id": "m-1", "plan": plan, "loaded_at": same_time} for plan in ("b", "c", "a")],
    )

    answers = [view_rows(bq_client, dataset, "pages") for _ in range(3)]

    # The rows differ only in `plan`, so the greatest JSON text is the one with "c",
    # whatever the order they were stored in.
    assert [[row["plan"] for row in answer] for answer in answers] == [["c"]] * 3


def test_view_is_recreated_with_the_new_column_after_a_schema_change(bq_client) -> None:
    dataset = fresh_dataset()
    manager = SchemaManager(bq_client, bq_client.project)
    manager.ensure(dataset, "signed_up", EVENT)
    insert(bq_client, dataset, "signed_up", [{"id": "m-1", "loaded_at": "2026-11-01T10:00:00Z"}])
    # The emulator expands a view's * at query time; BigQuery keeps the schema the view
    # had when it was created. Stand in for a stale view with one that shows no columns
    # of the table, so only a re-created view passes.
    stale = f"`{ref(bq_client, dataset, 'signed_up_view')}`"
    bq_client.query(f"CREATE OR REPLACE VIEW {stale} AS SELECT 'stale' AS marker").result()

    manager.ensure(dataset, "signed_up", {**EVENT, "seats": "INTEGER"})
    insert(
        bq_client,
        dataset,
        "signed_up",
        [{"id": "m-1", "seats": 3, "loaded_at": "2026-11-02T10:00:00Z"}],
    )

    assert manager.api_calls["create_view"] == 2
    assert [(row["id"], row["seats"]) for row in view_rows(bq_client, dataset, "signed_up")] == [
        ("m-1", 3)
    ]
    view = bq_client.get_table(ref(bq_client, dataset, "signed_up_view"))
    assert {field.name for field in view.schema} == set(EVENT) | {"seats"}


def test_view_follows_a_widening_rewrite(bq_client) -> None:
    dataset = fresh_dataset()
    manager = SchemaManager(bq_client, bq_client.project)
    manager.ensure(dataset, "video", {**EVENT, "length": "INTEGER"})
    insert(
        bq_client,
        dataset,
        "video",
        [{"id": "m-1", "length": 10, "loaded_at": "2026-11-01T10:00:00Z"}],
    )

    manager.ensure(dataset, "video", {**EVENT, "length": "STRING"})  # table rewritten
    insert(
        bq_client,
        dataset,
        "video",
        [{"id": "m-1", "length": "12 minutes", "loaded_at": "2026-11-02T10:00:00Z"}],
    )

    assert manager.api_calls["create_view"] == 2
    assert [row["length"] for row in view_rows(bq_client, dataset, "video")] == ["12 minutes"]
    view = bq_client.get_table(ref(bq_client, dataset, "video_view"))
    assert {field.name: field.field_type for field in view.schema}["length"] == "STRING"


def test_users_dead_letters_and_tables_without_loaded_at_get_no_view(bq_client) -> None:
    dataset = fresh_dataset()
    manager = SchemaManager(bq_client, bq_client.project)
    manager.ensure(dataset, "users", {"id": "STRING", "loaded_at": "TIMESTAMP", "email": "STRING"})
    manager.ensure(dataset, DEAD_LETTER_TABLE, DEAD_LETTER_SCHEMA)
    manager.ensure(dataset, "hand_made", {"id": "STRING", "timestamp": "TIMESTAMP"})

    assert manager.api_calls["create_view"] == 0
    assert not exists(bq_client, dataset, "users_view")
    assert not exists(bq_client, dataset, f"{DEAD_LETTER_TABLE}_view")
    assert not exists(bq_client, dataset, "hand_made_view")
    assert manager.api_calls["create_view_failed"] == 0


def test_refresh_views_recreates_every_event_view_of_a_dataset(bq_client) -> None:
    dataset = fresh_dataset()
    manager = SchemaManager(bq_client, bq_client.project)
    for table in ("tracks", "identifies"):
        manager.ensure(dataset, table, EVENT)
    manager.ensure(dataset, "users", {"id": "STRING", "loaded_at": "TIMESTAMP"})
    bq_client.delete_table(ref(bq_client, dataset, "tracks_view"))

    written = views.refresh_views(bq_client, bq_client.project, dataset)

    assert sorted(written) == ["identifies_view", "tracks_view"]
    assert exists(bq_client, dataset, "tracks_view")
    assert not exists(bq_client, dataset, "users_view")
