"""The README's first command: the bundled sample events through the whole product.

Starts the local stack (BigQuery and GCS emulators on 127.0.0.1, installing the
BigQuery emulator's virtualenv on first use), runs ``opentrack run`` on
``pipeline/samples/events.jsonl`` (all six call types, two sources, type
drift, bad lines) on Beam's local runner against the emulator, prints the
counters, every table made with its row count and columns, the dead letters
by reason, and stops the stack, whatever happens.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pipeline import localstack
from pipeline.commands.run import counters, run
from pipeline.warehouse.client import make_client
from pipeline.warehouse.report import warehouse_summary

SAMPLE_EVENTS = Path(__file__).resolve().parents[1] / "samples" / "events.jsonl"
DATASETS = ("demo_site", "mobile_app")


def main() -> int:
    install_dir = localstack.default_state_dir()
    print(f"local stack: installing/starting (install dir {install_dir})", flush=True)
    with tempfile.TemporaryDirectory(prefix="opentrack-demo-") as state_dir:
        with localstack.running(Path(state_dir), install_dir=install_dir) as stack:
            os.environ.update(localstack.environment(stack))
            print(
                f"BigQuery emulator at {stack.bigquery_endpoint}, GCS at {stack.storage_endpoint}"
            )
            print(f"loading {SAMPLE_EVENTS.name} on the DirectRunner's FnApiRunner ...", flush=True)
            result = run(
                [
                    f"--input={SAMPLE_EVENTS}",
                    f"--bigquery_project={stack.project}",
                    f"--bigquery_endpoint={stack.bigquery_endpoint}",
                    "--source_name=Demo Site",
                    "--source_field=context.source",
                ]
            )
            print("counters:")
            for name, value in sorted(counters(result).items()):
                print(f"    {name:<48} {value:>9}")
            client = make_client(stack.project, stack.bigquery_endpoint)
            print(warehouse_summary(client, DATASETS).render())
    print("local stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
