"""Entry point of the Dataflow Flex Template: template parameters -> the pipeline's graph.

The launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE in templates/Dockerfile)
with Dataflow's options and the launch parameters as ``--<name>=<value>`` flags.
Nothing here assembles steps: the graph comes from ``pipeline.graphs.batch`` (batch) or
``pipeline.graphs.streaming`` (streaming), the options from ``pipeline.commands.run``, so a
template job runs exactly what ``opentrack run`` runs.

The mode follows the source: ``subscription`` streams, ``input`` loads files. A
launch then needs only metadata.json's parameters; ``--streaming`` is still
honoured, also in the ``--streaming=true`` form of a launch parameter.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.commands.run import pipeline_options
from pipeline.graphs.batch import build_graph
from pipeline.graphs.options import OpenTrackOptions
from pipeline.graphs.streaming import build_streaming_graph

TEMPLATE_RUNNER = "DataflowRunner"
STREAMING_FLAG = "--streaming"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_LOG = logging.getLogger(__name__)


def _streaming_switch(arg: str) -> list[str]:
    """``--streaming=<bool>`` as Beam's bare switch (argparse refuses a value for it)."""
    if not arg.startswith(STREAMING_FLAG + "="):
        return [arg]
    value = arg.split("=", 1)[1].strip().lower()
    if value in _TRUE:
        return [STREAMING_FLAG]
    if value in _FALSE:
        return []
    raise ValueError(f"{STREAMING_FLAG} expects true or false, got {value!r}")


def template_args(argv: Sequence[str]) -> list[str]:
    """Template parameters as the pipeline's flags: one source, the mode it implies."""
    args = [normal for arg in argv for normal in _streaming_switch(arg)]
    options = PipelineOptions(args)
    source = options.view_as(OpenTrackOptions)
    if bool(source.input) == bool(source.subscription):
        raise ValueError(
            "give either input (a gs:// file pattern: batch) or subscription "
            "(projects/P/subscriptions/S: streaming), not both or neither"
        )
    if source.subscription and not options.view_as(StandardOptions).streaming:
        args.append(STREAMING_FLAG)
    return args


def with_template_runner(argv: Sequence[str]) -> list[str]:
    """Dataflow unless a runner is named: without it pipeline.commands.run would pick a
    local runner and process the data on the launcher VM."""
    args = list(argv)
    if not PipelineOptions(args).view_as(StandardOptions).runner:
        args.append(f"--runner={TEMPLATE_RUNNER}")
    return args


def build(argv: Sequence[str]) -> beam.Pipeline:
    """The pipeline of these template parameters, built and not run."""
    options = pipeline_options(template_args(argv))
    _warn_without_worker_code(options)
    pipeline = beam.Pipeline(options=options)
    if options.view_as(StandardOptions).streaming:
        build_streaming_graph(pipeline)
    else:
        build_graph(pipeline)
    return pipeline


def _warn_without_worker_code(options: PipelineOptions) -> None:
    """Dataflow workers run the stock Beam image unless told otherwise, and that
    image lacks this package: every step would fail to unpickle."""
    if "Dataflow" not in str(options.view_as(StandardOptions).runner or ""):
        return
    if options.view_as(WorkerOptions).sdk_container_image:
        return
    setup = options.view_as(SetupOptions)
    if setup.setup_file or setup.extra_packages:
        return
    _LOG.warning(
        "no sdk_container_image: Dataflow workers will not have the opentrack package; "
        "launch with the template's image as the worker image (templates/README.md)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Build and submit; returns at once (a Flex Template launcher must not wait)."""
    logging.basicConfig(level=logging.INFO)
    args = with_template_runner(sys.argv[1:] if argv is None else argv)
    result = build(args).run()
    _LOG.info("submitted: %s", result)


if __name__ == "__main__":
    main()
