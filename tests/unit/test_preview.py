"""`opentrack preview`: rows and dead letters on stdout, a summary on stderr."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson

from pipeline.commands.preview import preview
from tests.conftest import RECEIVED
from transforms.model.chain import ModelConfig
from transforms.model.route import SourceConfig

EVENTS = (
    b'{"type":"track","event":"Order Completed","userId":"u","messageId":"m1",'
    b'"properties":{"total":3}}\n'
    b"\n"
    b"not json\n"
    b'{"batch":[{"type":"page","anonymousId":"a","messageId":"m2","name":"Home"}]}\n'
)


def test_preview_prints_every_row_and_dead_letter_then_a_summary() -> None:
    out, err = io.StringIO(), io.StringIO()
    config = ModelConfig(sources=SourceConfig(default_source="Production Site"))
    summary = preview(io.BytesIO(EVENTS), out, err, config, RECEIVED)

    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    tables = [(r["dataset"], r["table"], r["row"]["id"]) for r in records if "row" in r]
    assert tables == [
        ("production_site", "order_completed", "m1"),
        ("production_site", "tracks", "m1"),
        ("production_site", "pages", "m2"),
    ]
    dead = [r["dead_letter"] for r in records if "dead_letter" in r]
    assert [(d["reason"], d["payload"]) for d in dead] == [("invalid_json", "not json")]
    assert records[0]["row"]["total"] == 3
    assert records[0]["row"]["received_at"] == "2026-11-05T12:00:00.000000Z"

    report = err.getvalue()
    assert "production_site.order_completed" in report
    assert "total" in report and "INTEGER" in report
    assert "invalid_json" in report
    assert summary.tables["production_site.order_completed"].columns["total"] == "INTEGER"


def test_preview_command_line() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.commands.cli",
            "preview",
            "--source-name",
            "Web Site",
            "--now",
            "2026-11-05T12:00:00Z",
        ],
        input=EVENTS,
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = completed.stdout.decode().splitlines()
    assert len(lines) == 4
    assert orjson.loads(lines[0])["dataset"] == "web_site"
    assert b"dead letters: 1" in completed.stderr


MONTH_OLD = (
    b'{"type":"track","event":"E","userId":"u","messageId":"old",'
    b'"timestamp":"2026-10-05T09:00:00Z","sentAt":"2026-10-05T09:00:02Z"}\n'
)


def test_preview_with_now_corrects_skew_against_it_and_without_keeps_the_timestamp() -> None:
    def timestamp(received: bool) -> str:
        out, err = io.StringIO(), io.StringIO()
        preview(io.BytesIO(MONTH_OLD), out, err, ModelConfig(), RECEIVED, received)
        return orjson.loads(out.getvalue().splitlines()[0])["row"]["timestamp"]

    # --now is when the event arrived: Segment's correction, RECEIVED - 2 s.
    assert timestamp(received=True) == "2026-11-05T11:59:58.000000Z"
    # A line read now, like a batch run's: the client's own time, a month back.
    assert timestamp(received=False) == "2026-10-05T09:00:00.000000Z"
