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
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.runners.runner import PipelineResult, PipelineState
from google.api_core.exceptions import GoogleAPIError

from pipeline.commands.arguments import snake_flags, with_environment
from pipeline.commands.preflight import (
    PreflightError,
    check_bigquery,
    check_input,
    check_subscription,
)
from pipeline.commands.run_help import beam_help_text, help_text
from pipeline.graphs.batch import build_graph
from pipeline.graphs.options import (
    OpenTrackOptions,
    OptionError,
    checked_s3_endpoint,
    pipeline_flags,
    refuse_unknown_arguments,
    warehouse_config,
)
from pipeline.graphs.slicing import estimated_bytes, input_paths, run_sliced
from pipeline.graphs.streaming import build_streaming_graph
from pipeline.warehouse.client import make_client
from pipeline.warehouse.report import warehouse_summary
from pipeline.warehouse.summary import RunSummary
from transforms.beam.file_sink import FILE_SUFFIX
from transforms.beam.schema_sync import DATASETS_NAMESPACE
from transforms.model.infer import infer
from transforms.model.naming import DEAD_LETTER_TABLE

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
        if entry.key.metric.namespace == DATASETS_NAMESPACE:
            continue  # which datasets, not how many of something: see written_datasets
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
    """Bytes per slice when this run should be sliced (``pipeline.graphs.slicing``), else 0."""
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_until_stopped(argv: Sequence[str], poll_seconds: float = 5.0) -> PipelineResult:
    """Run a streaming pipeline until it ends, Ctrl-C or SIGTERM (``kill``, a container
    stop), then cancel it cleanly."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    result = start(argv)
    try:
        while not PipelineState.is_terminal(result.state):
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        _LOG.warning("stopping the streaming pipeline")
        result.cancel()
    return result


def preflight(argv: Sequence[str]) -> None:
    """What must hold before a graph is built: valid options, an input that matches,
    a subscription that exists, a BigQuery that answers (``pipeline.commands.preflight``)."""
    options = pipeline_options(argv)
    opentrack = options.view_as(OpenTrackOptions)
    streaming = options.view_as(StandardOptions).streaming
    if streaming and not opentrack.subscription:
        raise OptionError("--streaming needs --subscription=projects/P/subscriptions/S")
    if not streaming and not opentrack.input:
        raise OptionError("--input=PATTERN is required (or --streaming --subscription=...)")
    checked_s3_endpoint(options)
    if not opentrack.output_dir:
        config = warehouse_config(opentrack)  # refuses what is wrong before any call
    if options.view_as(TestOptions).dry_run:
        return  # a Dataflow dry run builds the job offline: nothing to reach
    if streaming:
        check_subscription(opentrack.subscription)
    else:
        FileSystems.set_options(options)  # s3:// needs the --s3_* options to list
        check_input(opentrack.input)
    if not opentrack.output_dir:
        check_bigquery(config.project, config.endpoint)


def main(argv: Sequence[str]) -> int:
    """``opentrack run``; a failure other than a refused option propagates (the CLI
    prints it in one line)."""
    argv = snake_flags(argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    if "--help_beam" in argv:
        print(beam_help_text())
        return 0
    try:
        argv = with_environment(argv, pipeline_flags())
        refuse_unknown_arguments(argv)
        preflight(argv)
    except (OptionError, argparse.ArgumentTypeError) as error:
        print(f"opentrack run: error: {error}", file=sys.stderr)
        return 2
    except PreflightError as error:
        print(f"opentrack run: error: {error}", file=sys.stderr)
        return 1
    streaming = pipeline_options(argv).view_as(StandardOptions).streaming
    try:
        result = run_until_stopped(argv) if streaming else run(argv)
    except OptionError as error:  # one found only while the graph is built
        print(f"opentrack run: error: {error}", file=sys.stderr)
        return 2
    report(result, argv)
    return 0


def report(result: PipelineResult, argv: Sequence[str]) -> None:
    """The counters, then the tables the run wrote (files or BigQuery; not for a stream)."""
    print("counters:")
    for name, value in sorted(counters(result).items()):
        print(f"    {name:<48} {value:>9}")
    options = pipeline_options(argv)
    opentrack = options.view_as(OpenTrackOptions)
    if opentrack.output_dir:
        print(summarize_output_dir(opentrack.output_dir).render())
    elif not options.view_as(StandardOptions).streaming:
        print_warehouse_summary(opentrack, written_datasets(result))


def written_datasets(result: PipelineResult) -> list[str]:
    """The datasets whose tables the batch run ensured (``DATASETS_NAMESPACE``)."""
    query = result.metrics().query(MetricsFilter().with_namespace(DATASETS_NAMESPACE))
    return sorted({entry.key.metric.name for entry in query["counters"]})


def print_warehouse_summary(options: OpenTrackOptions, datasets: Sequence[str]) -> None:
    """The tables, rows and dead letters of those datasets; a summary that cannot be read
    is a warning, not a failed run."""
    if not datasets:
        return
    config = warehouse_config(options)
    client = make_client(config.project, config.endpoint)
    try:
        print(warehouse_summary(client, datasets, columns=False).render())
    except GoogleAPIError as error:
        _LOG.warning("the run is done; its summary could not be read: %s", error)
    finally:
        client.close()
