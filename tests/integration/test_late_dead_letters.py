"""Dead letters made after normalization hold the event as sent, and replay loads it.

Each late reason is provoked end to end (a column limit in the schema step, a row a
load job refuses, a row streaming inserts refuse), the dead letter is checked to hold
the original event line, the cause is fixed, ``opentrack replay`` writes the dead
letters to a file, ``opentrack run`` loads that file, and the event is then in its
tables once (the dedup views show each id once; an event's rows that had loaded the
first time are not shown twice). The schema-mismatch dead letter's payload is checked
in ``tests/pipeline/test_schema_sync.py`` (auto mode widens instead of refusing, so
only a hand-shaped schema side input reaches it).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from google.cloud import bigquery

from pipeline.commands import replay
from tests.integration.test_batch_pipeline import (
    create_tables,
    query,
    run_pipeline,
    source_name,
)
from tests.integration.test_load_jobs import page, typed_dataset  # noqa: F401 - a fixture
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name


def dead_letters(bq_client: bigquery.Client, dataset: str) -> list[dict]:
    return query(
        bq_client,
        f"SELECT message_id, stage, reason, error, payload FROM "
        f"`{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`",
    )


def replay_to_file(local_stack, dataset: str, output: Path, reason: str) -> None:  # noqa: ANN001
    status = replay.main(
        ["--bigquery_project", local_stack.project, "--bigquery_endpoint",
         local_stack.bigquery_endpoint, "--dataset", dataset, "--reason", reason,
         "--output", str(output), "--delete-replayed"]
    )  # fmt: skip
    assert status == 0


def view_ids(bq_client: bigquery.Client, dataset: str, table: str) -> list[str]:
    sql = f"SELECT id FROM `{bq_client.project}.{dataset}.{table}_view` ORDER BY id"
    return [row["id"] for row in query(bq_client, sql)]


def test_column_limit_dead_letters_hold_the_event_and_load_once_after_the_limit_is_raised(
    local_stack, bq_client, tmp_path: Path
) -> None:
    source = source_name("Late Column Limit")
    dataset = dataset_name(source)
    events = [
        {"type": "track", "event": "Wide Event", "userId": "w", "messageId": f"wide-{n}",
         "properties": {f"p{n}_{k}": k for k in range(3)}}
        for n in range(6)
    ]  # fmt: skip
    lines = [orjson.dumps(event) for event in events]
    path = tmp_path / "wide.jsonl"
    path.write_bytes(b"\n".join(lines))

    run_pipeline(local_stack, path, source, "--max_columns=17")  # room for 3 events' columns

    dead = dead_letters(bq_client, dataset)
    assert {d["reason"] for d in dead} == {"column_limit"} and len(dead) == 3
    by_id = {d["message_id"]: d for d in dead}
    for line, event in zip(lines, events, strict=True):
        if event["messageId"] in by_id:
            assert by_id[event["messageId"]]["payload"] == line.decode()  # the event as sent

    replayed = tmp_path / "replayed.jsonl"
    replay_to_file(local_stack, dataset, replayed, "column_limit")
    run_pipeline(local_stack, replayed, source)  # the default limit: 10,000 columns

    ids = sorted(event["messageId"] for event in events)
    assert view_ids(bq_client, dataset, "wide_event") == ids
    assert view_ids(bq_client, dataset, "tracks") == ids  # the first tracks rows not twice
    assert dead_letters(bq_client, dataset) == []


@pytest.mark.parametrize(
    ("method", "reason"), [("FILE_LOADS", "load_rejected"), ("STREAMING_INSERTS", "write_rejected")]
)
def test_a_refused_row_dead_letter_holds_the_event_and_loads_once_after_the_fix(
    local_stack,
    bq_client,
    typed_dataset: str,  # noqa: F811 - the fixture
    tmp_path: Path,
    method: str,
    reason: str,
) -> None:
    lines = [page("fits", seats=1), page("coloured", seats=2, colour="red")]
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b"\n".join(lines))
    manual = ["--auto_table_management=false", f"--write_method={method}"]

    run_pipeline(local_stack, path, typed_dataset, *manual)

    dead = dead_letters(bq_client, typed_dataset)
    assert [(d["message_id"], d["stage"], d["reason"]) for d in dead] == [
        ("coloured", "write", reason)
    ]
    assert dead[0]["payload"] == lines[1].decode()  # the event as sent, not the row
    assert f"{typed_dataset}.pages" in dead[0]["error"] and "colour" in dead[0]["error"]

    table = bq_client.get_table(f"{bq_client.project}.{typed_dataset}.pages")
    table.schema = [*table.schema, bigquery.SchemaField("colour", "STRING")]  # the fix
    bq_client.update_table(table, ["schema"])
    replayed = tmp_path / "replayed.jsonl"
    replay_to_file(local_stack, typed_dataset, replayed, reason)
    run_pipeline(local_stack, replayed, typed_dataset, *manual)

    rows = query(
        bq_client, f"SELECT id, colour FROM `{bq_client.project}.{typed_dataset}.pages` ORDER BY id"
    )
    assert rows == [{"id": "coloured", "colour": "red"}, {"id": "fits", "colour": None}]
    assert dead_letters(bq_client, typed_dataset) == []


def test_an_event_refused_by_two_tables_is_one_dead_letter(
    local_stack, bq_client, tmp_path: Path
) -> None:
    """Manual mode, no tables but the dead-letter table: a track's event-table row and its
    tracks row are both refused, and the event is dead-lettered once, with both errors."""
    dataset = dataset_name(source_name("late two tables"))
    bq_client.create_dataset(dataset)
    create_tables(bq_client, dataset, {DEAD_LETTER_TABLE: DEAD_LETTER_SCHEMA})
    line = orjson.dumps(
        {"type": "track", "event": "Signed Up", "userId": "u", "messageId": "two-tables"}
    )
    path = tmp_path / "track.jsonl"
    path.write_bytes(line)

    run_pipeline(local_stack, path, dataset, "--auto_table_management=false")

    dead = dead_letters(bq_client, dataset)
    assert len(dead) == 1 and dead[0]["payload"] == line.decode()
    assert f"{dataset}.signed_up" in dead[0]["error"] and f"{dataset}.tracks" in dead[0]["error"]
