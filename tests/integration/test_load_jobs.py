"""Batch writes through load jobs (``--write_method=FILE_LOADS``) on the real emulator.

What must hold: one load job per table and run, every event in its tables once or one
dead letter, a refused load costs only its offending rows (with BigQuery's error), no
load file is left behind, and a dead letter that cannot be stored fails the run.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from google.cloud import bigquery

from pipeline.commands.run import counters
from tests.integration.test_batch_pipeline import (
    SECONDARY,
    create_tables,
    dead_letters_by_id,
    expected_from_model,
    query,
    run_pipeline,
    source_name,
    table_counts,
    write_corpus,
)
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name


def test_one_load_job_per_table_loads_every_event_once_and_leaves_no_file(
    local_stack, bq_client, tmp_path: Path
) -> None:
    source = source_name("Loads Corpus")
    lines = write_corpus(tmp_path / "events.jsonl")
    per_table, expected_dead, input_events, distinct_users = expected_from_model(lines, source)
    temp = tmp_path / "temp"
    temp.mkdir()

    result = run_pipeline(
        local_stack, tmp_path / "events.jsonl", source, "--write_method=FILE_LOADS",
        f"--temp_location={temp}",
    )  # fmt: skip

    counts = table_counts(bq_client, dataset_name(source))
    assert counts.pop("users") == distinct_users
    assert counts.pop(DEAD_LETTER_TABLE) == expected_dead
    assert counts == {t: n for t, n in per_table.items() if t != "users"}
    primary = sum(n for table, n in counts.items() if table not in SECONDARY)
    assert primary + expected_dead == input_events
    seen = counters(result)
    # every table but users (MERGE) once, and the dead-letter table once
    assert seen["bigquery_load_jobs"] == seen["load_tables"] == len(counts) + 1
    assert "bigquery_insert_requests" not in seen
    assert list(temp.iterdir()) == [], "load files left behind"


def test_batch_runs_load_by_default(local_stack, bq_client, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps({"type": "page", "anonymousId": "a", "messageId": "d-1"}))
    source = source_name("Loads Default")

    seen = counters(run_pipeline(local_stack, path, source))

    assert seen["bigquery_load_jobs"] == 1 and "bigquery_insert_requests" not in seen
    assert table_counts(bq_client, dataset_name(source))["pages"] == 1


@pytest.fixture
def typed_dataset(bq_client: bigquery.Client) -> str:
    """A hand-made dataset: `pages` whose `seats` is INTEGER, and the dead-letter table."""
    dataset = dataset_name(source_name("loads typed"))
    bq_client.create_dataset(dataset)
    pages = {
        "id": "STRING", "anonymous_id": "STRING", "received_at": "TIMESTAMP",
        "timestamp": "TIMESTAMP", "original_timestamp": "TIMESTAMP", "uuid_ts": "TIMESTAMP",
        "loaded_at": "TIMESTAMP", "name": "STRING", "seats": "INTEGER",
    }  # fmt: skip
    create_tables(bq_client, dataset, {"pages": pages, DEAD_LETTER_TABLE: DEAD_LETTER_SCHEMA})
    return dataset


def page(message_id: str, **properties: object) -> bytes:
    return orjson.dumps(
        {"type": "page", "anonymousId": "a", "messageId": message_id, "name": "Home",
         "timestamp": "2026-11-01T10:00:00Z", "properties": properties}
    )  # fmt: skip


def test_a_refused_load_dead_letters_only_its_offending_rows(
    local_stack, bq_client, typed_dataset: str, tmp_path: Path
) -> None:
    lines = [page(f"ok-{n}", seats=n) for n in range(6)]
    lines.insert(3, page("not-a-number", seats="many"))  # BigQuery refuses the whole load
    lines.append(page("unknown-column", seats=1, colour="red"))  # refused before the load
    path = tmp_path / "typed.jsonl"
    path.write_bytes(b"\n".join(lines))

    seen = counters(
        run_pipeline(
            local_stack, path, typed_dataset, "--auto_table_management=false",
            "--write_method=FILE_LOADS",
        )
    )  # fmt: skip

    project = bq_client.project
    loaded = query(bq_client, f"SELECT id, seats FROM `{project}.{typed_dataset}.pages`")
    assert sorted(r["id"] for r in loaded) == [f"ok-{n}" for n in range(6)]
    dead = dead_letters_by_id(bq_client, typed_dataset)
    assert set(dead) == {"not-a-number", "unknown-column"}
    assert {(d["stage"], d["reason"]) for d in dead.values()} == {("write", "load_rejected")}
    assert "many" in dead["not-a-number"]["error"] and "refused" in dead["not-a-number"]["error"]
    assert "no such field: colour" in dead["unknown-column"]["error"]
    # the pages load (refused, then row by row) and the dead-letter load
    assert seen["bigquery_load_jobs"] == 2
    assert seen["load_refused_rows_retried"] == 7


def test_a_dead_letter_that_cannot_be_stored_fails_the_run(
    local_stack, bq_client, tmp_path: Path
) -> None:
    dataset = dataset_name(source_name("loads unwritable"))
    bq_client.create_dataset(dataset)
    # A dead-letter table that cannot take dead letters: it lacks their columns.
    create_tables(bq_client, dataset, {DEAD_LETTER_TABLE: {"id": "STRING"}})
    path = tmp_path / "lost.jsonl"
    path.write_bytes(page("no-table"))  # no pages table: a dead letter

    with pytest.raises(Exception, match="dead letter could not be stored"):
        run_pipeline(local_stack, path, dataset, "--auto_table_management=false")


def test_loads_from_a_gcs_temp_location_and_deletes_its_files(
    local_stack, bq_client, gcs_client, tmp_path: Path
) -> None:
    bucket = gcs_client.create_bucket(
        dataset_name(source_name("loads temp")).replace("_", "-")[:60]
    )
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b"\n".join(page(f"gcs-{n}", seats=n) for n in range(5)))
    source = source_name("Loads Gcs")

    seen = counters(
        run_pipeline(
            local_stack, path, source, "--write_method=FILE_LOADS",
            f"--temp_location=gs://{bucket.name}/tmp",
        )
    )  # fmt: skip

    assert seen["bigquery_load_jobs"] == 1
    assert table_counts(bq_client, dataset_name(source))["pages"] == 5
    assert [blob.name for blob in bucket.list_blobs()] == [], "load files left in the bucket"
