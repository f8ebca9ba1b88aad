"""`opentrack run` end to end on the sample events with the JSON-lines sink."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipeline.commands.run import counters, run, summarize_output_dir
from transforms.model.naming import DEAD_LETTER_TABLE

# Hand-counted from pipeline/samples/events.jsonl (22 lines, one a batch of 3: 24 events).
EXPECTED_TABLE_ROWS = {
    "demo_site.identifies": 3,
    "demo_site.users": 3,
    "demo_site.pages": 2,
    "demo_site.product_added": 2,
    "demo_site.order_completed": 1,
    "demo_site.groups": 1,
    "demo_site.aliases": 1,
    "demo_site.signed_up": 1,
    "demo_site.tracks_event": 1,
    "demo_site.3d_secure_passed": 1,
    "demo_site.tracks": 6,
    "mobile_app.screens": 1,
    "mobile_app.video_playback_started": 2,
    "mobile_app.tracks": 2,
}
EXPECTED_DEAD_LETTERS = {
    "invalid_json": 1,
    "missing_event": 1,
    "missing_identity": 1,
    "unknown_type": 1,
    "missing_group_id": 1,
    "invalid_timestamp": 1,
    "not_an_object": 1,
    "missing_user_id": 1,
}
INPUT_EVENTS = 24


def _read(output: Path) -> tuple[Counter[str], list[dict], dict[str, list[dict]]]:
    rows_per_table: Counter[str] = Counter()
    dead_letters: list[dict] = []
    rows: dict[str, list[dict]] = {}
    for path in output.glob("*.jsonl"):
        name = path.name.split("-", 1)[0]
        records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        if name.endswith("." + DEAD_LETTER_TABLE):
            dead_letters.extend(records)
        else:
            rows_per_table[name] += len(records)
            rows.setdefault(name, []).extend(records)
    return rows_per_table, dead_letters, rows


# The sample is 4.3 KB: whole, or in at least 3 slices of at most 1.5 KB of whole lines.
@pytest.mark.parametrize("slice_mb, min_slices, max_slices", [("128", 0, 0), ("0.0015", 3, 22)])
def test_sample_events_land_in_their_tables_or_as_dead_letters(
    tmp_path: Path, sample_events_path: Path, slice_mb: str, min_slices: int, max_slices: int
) -> None:
    """Whole, and in slices of 1.5 KB (``--local_slice_mb``): the same rows and dead letters."""
    result = run(
        [
            f"--input={sample_events_path}",
            f"--output_dir={tmp_path}",
            "--source_name=Demo Site",
            "--source_field=context.source",
            f"--local_slice_mb={slice_mb}",
        ]
    )
    rows_per_table, dead_letters, rows = _read(tmp_path)
    labels = {re.search(r"-(s[0-9]{5})-", p.name) for p in tmp_path.glob("*.jsonl")}
    assert min_slices <= len({m.group(1) for m in labels if m}) <= max_slices

    assert dict(rows_per_table) == EXPECTED_TABLE_ROWS
    assert Counter(d["reason"] for d in dead_letters) == EXPECTED_DEAD_LETTERS
    primary_ids = {
        row["id"]
        for table, table_rows in rows.items()
        if table.split(".")[1] not in ("tracks", "users")
        for row in table_rows
    }
    assert len(primary_ids) + len(dead_letters) == INPUT_EVENTS
    assert all(d["payload"] for d in dead_letters)

    metrics = counters(result)
    assert metrics["validate_received_messages"] == 22
    assert metrics["validate_valid_events"] == 16
    assert metrics["validate_dead_letters"] == 8
    assert metrics["normalize_rows"] == sum(EXPECTED_TABLE_ROWS.values())

    summary = summarize_output_dir(str(tmp_path))
    assert summary.tables["mobile_app.video_playback_started"].columns["position"] == "STRING"
    assert summary.tables["demo_site.product_added"].columns["price"] == "FLOAT"
    assert sum(summary.dead_letters.values()) == 8


def test_gzipped_input_and_blank_lines(tmp_path: Path) -> None:
    import gzip

    source = tmp_path / "in" / "events.jsonl.gz"
    source.parent.mkdir()
    with gzip.open(source, "wb") as handle:
        handle.write(b'{"type":"page","anonymousId":"a","messageId":"p1"}\n\n   \n')
        handle.write(b'{"type":"page","anonymousId":"a","messageId":"p2"}\r\n')
    output = tmp_path / "out"
    run([f"--input={source}", f"--output_dir={output}", "--source_name=Gz"])
    rows_per_table, dead_letters, rows = _read(output)
    assert dict(rows_per_table) == {"gz.pages": 2}
    assert dead_letters == []
    assert sorted(r["id"] for r in rows["gz.pages"]) == ["p1", "p2"]
