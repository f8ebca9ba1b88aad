"""Fail fast: with the local stack up, a run that forgot its endpoint, names a missing
subscription or a wrong port stops within seconds with one line saying what to fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline import localstack
from pipeline.commands import cli

EVENT = '{"type":"track","event":"E","userId":"u","messageId":"m1"}\n'


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(EVENT)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    started = time.monotonic()
    code = cli.main(argv)
    elapsed = time.monotonic() - started
    return code, capsys.readouterr().err.strip().splitlines(), elapsed


def test_a_forgotten_endpoint_names_the_local_stack(
    local_stack: localstack.LocalStack,
    local_stack_state_dir: Path,
    events: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENTRACK_BIGQUERY_ENDPOINT")
    monkeypatch.setenv("OPENTRACK_LOCAL_STATE", str(local_stack_state_dir))
    code, lines, elapsed = _run(["run", f"--input={events}", "--bigquery_project=p"], capsys)
    assert code == 1
    (line,) = lines
    assert line.startswith("opentrack run: error: BigQuery at bigquery.googleapis.com does not")
    assert "set --bigquery_endpoint or OPENTRACK_BIGQUERY_ENDPOINT" in line
    assert local_stack.bigquery_endpoint in line
    assert elapsed <= 10, f"the check took {elapsed:.1f} s"


def test_a_closed_port_is_one_line(
    local_stack: localstack.LocalStack, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", f"--input={events}", "--bigquery_endpoint=http://127.0.0.1:9"]
    code, lines, elapsed = _run(argv, capsys)
    assert code == 1
    assert lines == [
        "opentrack run: error: BigQuery at http://127.0.0.1:9 does not answer "
        "(connection refused): is `opentrack local up` running?"
    ]
    assert elapsed <= 10


def test_a_missing_subscription_is_one_line(
    local_stack: localstack.LocalStack,
    pubsub_emulator: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subscription = f"projects/{local_stack.project}/subscriptions/never-made"
    code, lines, _ = _run(["run", "--streaming", f"--subscription={subscription}"], capsys)
    assert code == 1
    (line,) = lines
    assert line.startswith(f"opentrack run: error: --subscription={subscription} does not exist")


def test_the_environment_of_local_up_is_enough_to_run(
    local_stack: localstack.LocalStack, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --bigquery_* flag: OPENTRACK_BIGQUERY_PROJECT and _ENDPOINT (what ``eval
    "$(opentrack local up)"`` exports, as the session fixture does) point the run there."""
    code = cli.main(["run", f"--input={events}", "--source_name=Env Only"])
    out = capsys.readouterr().out
    assert code == 0
    tables = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if line.startswith("env_only.")
    }
    assert tables == {"env_only.e": 1, "env_only.tracks": 1}
    assert "dead letters: 0" in out
