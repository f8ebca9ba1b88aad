"""`opentrack replay` against the real emulators (nothing mocked)."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest
from google.cloud import bigquery

from pipeline.commands import replay
from pipeline.commands.run import run
from pipeline.localstack import LocalStack
from pipeline.warehouse.schema import to_api
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE

_names = itertools.count()
SOURCE = "Replay Site"


def event(message_id: str, **extra: object) -> str:
    body = {"type": "track", "event": "Plan Chosen", "userId": "u-1", "messageId": message_id}
    return json.dumps({**body, **extra}, separators=(",", ":"))


# (reason, stage, received_at, payload, truncated)
DEAD_LETTERS = [
    ("write_rejected", "write", "2026-11-01T09:59:59Z", event("early"), False),
    ("write_rejected", "write", "2026-11-01T10:00:00Z", event("w-1"), False),
    (
        "write_rejected",
        "write",
        "2026-11-01T10:30:00Z",
        event("w-2", properties={"plan": "pro"}),
        False,
    ),
    ("write_rejected", "write", "2026-11-01T10:45:00Z", event("cut")[:20], True),
    ("schema_mismatch", "schema", "2026-11-01T10:50:00Z", event("s-1"), False),
    ("invalid_json", "validate", "2026-11-01T10:40:00Z", '{"type": "track",', False),
    ("write_rejected", "write", "2026-11-01T11:00:00Z", event("late"), False),
]
WINDOW = ["--since", "2026-11-01T10:00:00Z", "--until", "2026-11-01T11:00:00"]


def fresh_dataset(bq_client: bigquery.Client, dead_letters: list[tuple] = DEAD_LETTERS) -> str:
    dataset = f"replay_{next(_names)}_{threading.get_ident() % 1000}"
    bq_client.create_dataset(f"{bq_client.project}.{dataset}")
    table = f"{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}"
    bq_client.create_table(bigquery.Table(table, schema=to_api(DEAD_LETTER_SCHEMA)))
    rows = [
        {
            "stage": stage,
            "reason": reason,
            "error": f"{reason} in test",
            "payload": payload,
            "payload_truncated": truncated,
            "source": SOURCE,
            "received_at": received_at,
            "loaded_at": received_at,
        }
        for reason, stage, received_at, payload, truncated in dead_letters
    ]
    assert bq_client.insert_rows_json(table, rows) == []
    return dataset


def replay_main(local_stack: LocalStack, dataset: str, *args: str) -> int:
    return replay.main(
        [
            "--bigquery_project",
            local_stack.project,
            "--bigquery_endpoint",
            local_stack.bigquery_endpoint,
            "--dataset",
            dataset,
            *args,
        ]
    )


def remaining(bq_client: bigquery.Client, dataset: str) -> list[str]:
    sql = (
        f"SELECT payload FROM `{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}` "
        "ORDER BY received_at"
    )
    return [row["payload"] for row in bq_client.query(sql).result()]


def test_replays_a_reason_and_time_range_to_a_file(
    local_stack, bq_client, tmp_path, capsys
) -> None:
    dataset = fresh_dataset(bq_client)
    output = tmp_path / "replay.jsonl"

    status = replay_main(
        local_stack, dataset, "--reason", "write_rejected", *WINDOW, "--output", str(output)
    )

    assert status == 0
    assert output.read_text().splitlines() == [DEAD_LETTERS[1][3], DEAD_LETTERS[2][3]]
    printed = capsys.readouterr().out
    assert "selected: 3, replayed: 2, skipped-truncated: 1, deleted: 0" in printed
    assert "truncated payload: not replayable" in printed
    assert len(remaining(bq_client, dataset)) == len(DEAD_LETTERS)  # nothing deleted
    assert not list(tmp_path.glob("*.partial"))


def test_reasons_repeat_and_stage_filters(local_stack, bq_client, tmp_path) -> None:
    dataset = fresh_dataset(bq_client)
    output = tmp_path / "replay.jsonl"

    replay_main(
        local_stack,
        dataset,
        "--reason",
        "schema_mismatch",
        "--reason",
        "invalid_json",
        "--output",
        str(output),
    )
    assert output.read_text().splitlines() == [DEAD_LETTERS[5][3], DEAD_LETTERS[4][3]]

    replay_main(local_stack, dataset, "--stage", "write", "--output", str(output))
    assert output.read_text().splitlines() == [
        DEAD_LETTERS[i][3]
        for i in (0, 1, 2, 6)  # every write-stage one but the truncated
    ]


def test_dry_run_counts_and_writes_nothing(local_stack, bq_client, tmp_path, capsys) -> None:
    dataset = fresh_dataset(bq_client)
    output = tmp_path / "replay.jsonl"

    status = replay_main(local_stack, dataset, *WINDOW, "--output", str(output), "--dry-run")

    assert status == 0
    assert not output.exists() and not list(tmp_path.iterdir())
    printed = capsys.readouterr().out
    assert "selected: 5, replayed: 0, skipped-truncated: 1" in printed
    assert "would replay: 4" in printed
    assert "write_rejected\twrite\t3 selected, 1 truncated" in printed
    assert len(remaining(bq_client, dataset)) == len(DEAD_LETTERS)


def test_delete_replayed_removes_exactly_what_was_replayed(
    local_stack, bq_client, tmp_path, capsys
) -> None:
    dataset = fresh_dataset(bq_client)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"

    status = replay_main(
        local_stack,
        dataset,
        "--reason",
        "write_rejected",
        *WINDOW,
        "--output",
        str(first),
        "--delete-replayed",
    )

    assert status == 0
    assert "deleted: 2" in capsys.readouterr().out
    kept = [DEAD_LETTERS[i][3] for i in (0, 5, 3, 4, 6)]  # by received_at; truncated one kept
    assert remaining(bq_client, dataset) == kept
    # A second replay of the same selection finds nothing left to send.
    replay_main(
        local_stack, dataset, "--reason", "write_rejected", *WINDOW, "--output", str(second)
    )
    assert second.read_text() == ""
    assert "selected: 1, replayed: 0, skipped-truncated: 1" in capsys.readouterr().out


def test_line_breaks_json_payloads_flattened_others_skipped(
    local_stack, bq_client, tmp_path, capsys
) -> None:
    pretty = json.dumps(
        {"type": "track", "event": "A", "userId": "u", "properties": {"x": "a\nb"}}, indent=2
    )
    broken = '{"type":\n"track", oops'
    dataset = fresh_dataset(
        bq_client,
        [
            ("invalid_json", "validate", "2026-11-01T10:00:00Z", pretty, False),
            ("invalid_json", "validate", "2026-11-01T10:01:00Z", broken, False),
        ],
    )
    output = tmp_path / "replay.jsonl"

    replay_main(local_stack, dataset, "--output", str(output))

    lines = output.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(pretty)
    assert "skipped-multiline: 1" in capsys.readouterr().out


def test_a_replayed_file_loads_with_opentrack_run(local_stack, bq_client, tmp_path) -> None:
    """The file is real input for `opentrack run --input`: the fixed events load."""
    source = f"Replay Run {next(_names)}"
    dataset = fresh_dataset(bq_client)
    output = tmp_path / "replay.jsonl"
    replay_main(
        local_stack, dataset, "--reason", "write_rejected", *WINDOW, "--output", str(output)
    )

    run(
        [
            f"--input={output}",
            f"--bigquery_project={local_stack.project}",
            f"--bigquery_endpoint={local_stack.bigquery_endpoint}",
            f"--source_name={source}",
        ]
    )

    loaded = source.lower().replace(" ", "_")
    sql = f"SELECT id, `plan` FROM `{bq_client.project}.{loaded}.plan_chosen_view` ORDER BY id"
    assert [tuple(row.values()) for row in bq_client.query(sql).result()] == [
        ("w-1", None),
        ("w-2", "pro"),
    ]


def test_publishes_to_pubsub_with_replay_and_source_attributes(
    local_stack, bq_client, pubsub_publisher, pubsub_subscriber, capsys
) -> None:
    dataset = fresh_dataset(bq_client)
    topic = f"projects/{local_stack.project}/topics/{dataset}"
    subscription = f"projects/{local_stack.project}/subscriptions/{dataset}"
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)

    status = replay_main(
        local_stack,
        dataset,
        "--reason",
        "write_rejected",
        *WINDOW,
        "--topic",
        topic,
        "--delete-replayed",
    )

    assert status == 0
    received = []
    for _ in range(20):
        response = pubsub_subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        received += response.received_messages
        if len(received) >= 2:
            break
    pubsub_subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    messages = sorted((m.message.data.decode(), dict(m.message.attributes)) for m in received)
    assert messages == sorted(
        (DEAD_LETTERS[i][3], {"opentrack_replay": "1", "source": SOURCE}) for i in (1, 2)
    )
    assert "selected: 3, replayed: 2, skipped-truncated: 1, deleted: 2" in capsys.readouterr().out
    assert len(remaining(bq_client, dataset)) == len(DEAD_LETTERS) - 2


@pytest.mark.parametrize(
    "args",
    [
        ["--dataset", "d", "--output", "x"],  # no project
        ["--bigquery_project", "opentrack-local", "--dataset", "d"],  # no target
        ["--bigquery_project", "opentrack-local", "--dataset", "d; DROP", "--output", "x"],
        [
            "--bigquery_project",
            "opentrack-local",
            "--dataset",
            "d",
            "--reason",
            "x' OR '1",
            "--output",
            "x",
        ],
        [
            "--bigquery_project",
            "opentrack-local",
            "--dataset",
            "d",
            "--since",
            "yesterday",
            "--output",
            "x",
        ],
        ["--bigquery_project", "opentrack-local", "--dataset", "d", "--topic", "t", "--dry-run"],
        [
            "--bigquery_project",
            "opentrack-local",
            "--dataset",
            "d",
            "--output",
            "x",
            "--topic",
            "projects/p/topics/t",
        ],
        [
            "--bigquery_project",
            "opentrack-local",
            "--dataset",
            "d",
            "--dry-run",
            "--delete-replayed",
        ],
        [
            "--bigquery_project",
            "opentrack-local",
            "--dataset",
            "d",
            "--output",
            "x",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-01",
        ],
    ],
)
def test_bad_arguments_are_refused_before_any_call(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENTRACK_BIGQUERY_PROJECT", raising=False)  # "no project" means none
    with pytest.raises(SystemExit) as exit_info:
        replay.main(args)
    assert exit_info.value.code == 2


def test_missing_dead_letter_table_is_reported(local_stack, bq_client, tmp_path, capsys) -> None:
    dataset = f"replay_missing_{next(_names)}"
    bq_client.create_dataset(f"{bq_client.project}.{dataset}")

    status = replay_main(local_stack, dataset, "--output", str(tmp_path / "x.jsonl"))

    assert status == 1
    assert "not found" in capsys.readouterr().err.lower()
