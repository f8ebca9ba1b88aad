"""The README's walkthroughs, run as written (read from the README, not copied here), on
the session's local stack: a newcomer who pastes them sees rows."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline import localstack

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "pipeline" / "samples" / "events.jsonl"


def walkthrough(name: str) -> str:
    """The ```bash block of README.md whose first line is ``# walkthrough: <name>``."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith(f"# walkthrough: {name}\n")]
    return block


def run_walkthrough(name: str, state_dir: Path, timeout: float) -> str:
    if not (REPO / ".venv" / "bin" / "activate").exists():
        pytest.fail("the walkthrough sources .venv/bin/activate: run `make install` first")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENTRACK_")}
    environ["OPENTRACK_LOCAL_STATE"] = str(state_dir)  # `local up` finds the session's stack
    done = subprocess.run(
        ["bash", "-e", "-c", walkthrough(name)], cwd=REPO, env=environ, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def predicted_track_events() -> dict[str, int]:
    """Distinct track ids per event, by ``opentrack preview`` of the sample file."""
    preview = subprocess.run(
        [sys.executable, "-m", "pipeline.commands.cli", "preview", f"--input={SAMPLES}",
         "--source_name=My Shop"],
        capture_output=True, check=True,
    )  # fmt: skip
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for line in preview.stdout.splitlines():
        record = orjson.loads(line)
        if record.get("table") == "tracks":
            ids[record["row"]["event"]].add(record["row"]["id"])
    return {event: len(found) for event, found in ids.items()}


def test_the_batch_walkthrough_shows_the_loaded_events(
    local_stack: localstack.LocalStack, local_stack_state_dir: Path
) -> None:
    out = run_walkthrough("batch", local_stack_state_dir, timeout=300)
    expected = predicted_track_events()
    shown = {}
    for line in out.splitlines():
        event, _, count = line.rpartition(" ")
        if count.isdigit() and event in expected:
            shown[event] = int(count)
    assert expected and shown == expected
    assert re.search(r"^my_shop\.tracks\s+\d+", out, re.M), out[-2000:]
    assert "dead letters:" in out


def test_the_streaming_walkthrough_shows_the_streamed_events(
    local_stack: localstack.LocalStack, local_stack_state_dir: Path, pubsub_emulator: str
) -> None:
    out = run_walkthrough("streaming", local_stack_state_dir, timeout=300)
    assert "3 songs played" in out.splitlines()
