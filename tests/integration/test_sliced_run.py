"""A local batch run in slices (``--local_slice_mb``) into the BigQuery emulator: every slice
is a whole run (schema step, inserts, users MERGE, dead letters), and together they load every
event once, as one run would."""

from __future__ import annotations

from pathlib import Path

from pipeline.commands.run import counters, run
from tests.integration.test_batch_pipeline import source_name
from tests.integration.test_faults import check_every_event_once, write_corpus


def test_a_sliced_run_loads_every_event_once(local_stack, bq_client, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = write_corpus(path)
    size_mb = path.stat().st_size / 1e6
    source = source_name("Sliced")
    result = run(
        [
            f"--input={path}",
            f"--bigquery_project={local_stack.project}",
            f"--bigquery_endpoint={local_stack.bigquery_endpoint}",
            f"--source_name={source}",
            f"--local_slice_mb={size_mb / 2.5:.6f}",  # at least 3 slices
        ]
    )
    assert len(result.results) >= 3  # a SlicedResult: one pipeline per slice, 2.5+ slices
    assert counters(result)["validate_received_messages"] == len(lines)
    check_every_event_once(bq_client, lines, source)
