"""``opentrack run``: parse options, build the graph, run it, report what happened.

Runner: unless ``--runner`` is given, batch runs use Beam's FnApiRunner, the
engine the DirectRunner itself falls back to once it fails to download the
Prism runner (these machines are offline); naming it skips that attempt.
Streaming runs (``--streaming``) use the BundleBasedDirectRunner, the only
local runner with Pub/Sub reads and processing-time timers.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.graph import build_graph
from pipeline.streaming_graph import build_streaming_graph
from pipeline.options import OpenTrackOptions, OptionError, refuse_unknown_arguments
from pipeline.slicing import estimated_bytes, input_paths, run_sliced
from pipeline.summary import RunSummary
from transforms.file_sink import FILE_SUFFIX
from transforms.infer import infer
from transforms.naming import DEAD_LETTER_TABLE

LOCAL_BATCH_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
LOCAL_STREAMING_RUNNER = "BundleBasedDirectRunner"
_LOCAL_RUNNERS = (LOCAL_BATCH_RUNNER, "DirectRunner", "FnApiRunner")
_LOG = logging.getLogger(__name__)


def pipeline_options(argv: Sequence[str]) -> PipelineOptions:
    options = PipelineOptions(list(argv))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_STREAMING_RUNNER if standard.streaming else LOCAL_BATCH_RUNNER
    return options


def counters(result: PipelineResult, attempted: bool = False) -> dict[str, int]:
    """Counters of the run, by name: committed ones, or attempted ones (a cancelled
    streaming run on the DirectRunner has not committed its last bundles)."""
    query = result.metrics().query()
    totals: dict[str, int] = {}
    for entry in query["counters"]:
        value = entry.attempted if attempted else entry.committed
        if value is not None:
            totals[entry.key.metric.name] = totals.get(entry.key.metric.name, 0) + value
    return totals


def summarize_output_dir(output_dir: str) -> RunSummary:
    """Tables, rows, column types and dead-letter reasons found in a file sink."""
    summary = RunSummary()
    for path in sorted(Path(output_dir).glob(f"*{FILE_SUFFIX}")):
        dataset, _, rest = path.name.partition(".")
        table = rest.split("-", 1)[0]
        with path.open("rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                if table == DEAD_LETTER_TABLE:
                    summary.add_dead_letter(record["reason"])
                    continue
                schema = {}
                for column, value in record.items():
                    inferred = infer(value)
                    if inferred is not None:
                        schema[column] = inferred[0]
                summary.add_row(dataset, table, schema)
    return summary


def start(argv: Sequence[str]) -> PipelineResult:
    """Build and start the pipeline (batch or ``--streaming``) without waiting."""
    options = pipeline_options(argv)
    pipeline = beam.Pipeline(options=options)
    if options.view_as(StandardOptions).streaming:
        build_streaming_graph(pipeline)
    else:
        build_graph(pipeline)
    return pipeline.run()


def _run_slice(argv: Sequence[str], path: str, index: int) -> PipelineResult:
    options = pipeline_options([*argv, f"--input={path}"])
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, output_label=f"s{index:05d}")
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _slice_bytes(options: PipelineOptions) -> int:
    """Bytes per slice when this run should be sliced (``pipeline.slicing``), else 0."""
    opentrack = options.view_as(OpenTrackOptions)
    standard = options.view_as(StandardOptions)
    local = standard.runner in _LOCAL_RUNNERS
    if standard.streaming or not local or not opentrack.input or opentrack.local_slice_mb <= 0:
        return 0
    return int(opentrack.local_slice_mb * 1_000_000)


@contextlib.contextmanager
def _local_temp_location(argv: Sequence[str]) -> Iterator[list[str]]:
    """A local batch run's --temp_location: a directory of its own, inside the one given
    or the machine's temp dir, removed when the run ends however it ends, so no load
    file outlives it. A ``gs://`` location is kept (each table's files are deleted
    after its load)."""
    options = pipeline_options(argv)
    given = options.view_as(GoogleCloudOptions).temp_location
    local = options.view_as(StandardOptions).runner in _LOCAL_RUNNERS
    if not local or (given and given.startswith("gs://")):
        yield list(argv)
        return
    with tempfile.TemporaryDirectory(prefix="opentrack-run-", dir=given or None) as directory:
        yield [*argv, f"--temp_location={directory}"]


def run(argv: Sequence[str]) -> PipelineResult:
    """Run a batch pipeline to the end; a large input on the local runner runs in slices."""
    with _local_temp_location(argv) as local_argv:
        return _run_batch(local_argv)


def _run_batch(argv: Sequence[str]) -> PipelineResult:
    options = pipeline_options(argv)
    slice_bytes = _slice_bytes(options)
    if slice_bytes:
        files = input_paths(options.view_as(OpenTrackOptions).input)
        if estimated_bytes(files) > slice_bytes:
            _LOG.info("input over --local_slice_mb: running it in slices")
            return run_sliced(  # type: ignore[return-value]
                files, slice_bytes, lambda path, index: _run_slice(argv, path, index)
            )
    result = start(argv)
    result.wait_until_finish()
    return result


def run_until_stopped(argv: Sequence[str], poll_seconds: float = 5.0) -> PipelineResult:
    """Run a streaming pipeline until it ends or Ctrl-C, then cancel it cleanly."""
    result = start(argv)
    try:
        while not PipelineState.is_terminal(result.state):
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        _LOG.warning("stopping the streaming pipeline")
        result.cancel()
    return result


def help_text() -> str:
    """``opentrack run --help``: every option of ours with its help; Beam's by name."""
    parser = argparse.ArgumentParser(
        prog="opentrack run",
        description="Run the pipeline: a batch run on files (--input PATTERN) or a streaming "
        "run from Pub/Sub (--streaming --subscription projects/P/subscriptions/S), into "
        "BigQuery (--bigquery_project P) or, with --output_dir DIR, into JSON-lines files.",
        epilog="Beam's own options are accepted as well: --runner, --project, --region, "
        "--temp_location, --streaming, --num_workers, ... (Beam's documentation lists them).",
    )
    OpenTrackOptions._add_argparse_args(parser)  # noqa: SLF001 - Beam's registration hook
    return parser.format_help()


def main(argv: Sequence[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    try:
        refuse_unknown_arguments(argv)
        streaming = pipeline_options(argv).view_as(StandardOptions).streaming
        result = run_until_stopped(argv) if streaming else run(argv)
    except OptionError as error:
        print(f"opentrack run: error: {error}", file=sys.stderr)
        return 2
    print("counters:")
    for name, value in sorted(counters(result).items()):
        print(f"    {name:<48} {value:>9}")
    output_dir = PipelineOptions(list(argv)).view_as(OpenTrackOptions).output_dir
    if output_dir:
        print(summarize_output_dir(output_dir).render())
    return 0
