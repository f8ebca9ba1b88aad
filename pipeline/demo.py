"""The README's first command: the bundled sample events through the pipeline.

Runs ``opentrack run`` on ``pipeline/samples/events.jsonl`` (all six call
types, two sources, type drift, bad lines) on Beam's local runner and prints
the counters, every table made with its row count and columns, and the dead
letters by reason. Until the BigQuery sink lands (issue 3) the tables are
JSON-lines files under a temporary directory.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pipeline import run

SAMPLE_EVENTS = Path(__file__).resolve().parent / "samples" / "events.jsonl"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="opentrack-demo-") as output_dir:
        print(f"loading {SAMPLE_EVENTS.name} -> {output_dir}")
        return run.main(
            [
                f"--input={SAMPLE_EVENTS}",
                f"--output_dir={output_dir}",
                "--source_name=Demo Site",
                "--source_field=context.source",
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
