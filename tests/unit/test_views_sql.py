"""The dedup view query (pure): its shape, quoting and refusal of hostile names.

That the SQL runs and deduplicates is checked on the emulator in
tests/integration/test_views.py.
"""

from __future__ import annotations

import pytest

from pipeline.warehouse import views
from pipeline.warehouse.identifiers import InvalidIdentifier

PROJECT = "opentrack-local"


def test_view_sql_for_an_event_table() -> None:
    assert views.dedup_view_query(PROJECT, "production_site", "order_completed") == (
        "SELECT * EXCEPT(_opentrack_rank) FROM ("
        "SELECT *, ROW_NUMBER() OVER (PARTITION BY `id` "
        "ORDER BY `loaded_at` DESC, TO_JSON_STRING(_opentrack_row) DESC) AS _opentrack_rank "
        "FROM `opentrack-local.production_site.order_completed` AS _opentrack_row"
        ") WHERE _opentrack_rank = 1"
    )


@pytest.mark.parametrize("table", ["tracks", "3d_secure", "_1a2b3c4d", "tracks_event"])
def test_view_is_named_after_its_table(table: str) -> None:
    sql = views.dedup_view_query(PROJECT, "src", table)
    assert views.view_name(table) == f"{table}_view"
    assert f"FROM `{PROJECT}.src.{table}` AS _opentrack_row" in sql


@pytest.mark.parametrize(
    ("project", "dataset", "table"),
    [
        (PROJECT, "src", "pages` WHERE 1=1; DROP TABLE `x"),
        (PROJECT, "src", "pages--"),
        (PROJECT, "src", "order completed"),
        (PROJECT, "src", ""),
        (PROJECT, "src", "a" * 1020),  # the view name would pass 1,024 characters
        (PROJECT, "src.other", "pages"),
        (PROJECT, "src`", "pages"),
        ("Bad_Project", "src", "pages"),
        ("proj`ect", "src", "pages"),
    ],
)
def test_hostile_names_are_refused(project: str, dataset: str, table: str) -> None:
    with pytest.raises(InvalidIdentifier):
        views.dedup_view_query(project, dataset, table)


def test_longest_table_name_still_fits_its_view() -> None:
    table = "a" * 1019  # transforms.model.naming's limit, so that "_view" fits
    assert views.view_name(table) == f"{table}_view"
    assert f".{table}` AS" in views.dedup_view_query(PROJECT, "src", table)


@pytest.mark.parametrize(
    "table", ["users", "_opentrack_dead_letters", "_opentrack_users_staging_0a1b", "pages_view"]
)
def test_non_event_tables_get_no_view(table: str) -> None:
    assert not views.is_event_table(table)
    with pytest.raises(InvalidIdentifier):
        views.dedup_view_query(PROJECT, "src", table)


@pytest.mark.parametrize(
    "table", ["tracks", "identifies", "pages", "order_completed", "users_event"]
)
def test_event_tables(table: str) -> None:
    assert views.is_event_table(table)


def test_can_dedup_needs_id_and_loaded_at() -> None:
    assert views.can_dedup({"id": "STRING", "loaded_at": "TIMESTAMP", "x": "STRING"})
    assert not views.can_dedup({"id": "STRING", "timestamp": "TIMESTAMP"})
    assert not views.can_dedup(["loaded_at"])
