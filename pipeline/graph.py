"""Assemble the pipeline graph from options; never runs it (run.py does)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io import ReadFromText
from apache_beam.pvalue import PCollection

from pipeline.options import OpenTrackOptions, model_config
from transforms.event_model import Clock, EventsToRows, EventsToRowsResult, line_to_message, utc_now
from transforms.file_sink import WriteJsonLines


def read_files(pipeline: beam.Pipeline, pattern: str) -> PCollection:
    """Lines of JSONL(.gz) files as RawMessages; bytes, so bad UTF-8 is a dead
    letter rather than a decode crash in the reader."""
    return (
        pipeline
        | "ReadFiles" >> ReadFromText(pattern, coder=BytesCoder())
        | "LinesToMessages" >> beam.FlatMap(line_to_message)
    )


def build_graph(pipeline: beam.Pipeline, clock: Clock = utc_now) -> EventsToRowsResult:
    """Read -> event model -> sink, as the pipeline's options say."""
    options = pipeline.options.view_as(OpenTrackOptions)
    if not options.input:
        raise ValueError("--input is required: a file pattern of JSONL events")
    if not options.output_dir:
        raise ValueError("--output_dir is required until the BigQuery sink is configured")
    config = model_config(options)
    result = read_files(pipeline, options.input) | "EventModel" >> EventsToRows(config, clock)
    _ = (result.rows, result.dead_letters) | "WriteJsonLines" >> WriteJsonLines(
        options.output_dir, config.sources.default_source
    )
    return result
