"""Assemble the pipeline graph from options; never runs it (run.py does)."""

from __future__ import annotations

import logging
from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.coders import BytesCoder
from apache_beam.io import ReadFromText
from apache_beam.pvalue import AsDict, PCollection

from pipeline.options import OpenTrackOptions, model_config, warehouse_config
from pipeline.warehouse.config import WarehouseConfig
from transforms.deadletter import DEAD_LETTER_SCHEMA, DeadLetter, dead_letter_dataset, dead_letter_row
from transforms.event_model import (
    DEAD_LETTERS,
    METRICS_NAMESPACE,
    Clock,
    EventsToRows,
    EventsToRowsResult,
    line_to_message,
    utc_now,
)
from transforms.file_sink import WriteJsonLines
from transforms.naming import DEAD_LETTER_TABLE
from transforms.normalize import TableRow
from transforms.schema_sync import ApplySchemas, FitRows, UnionSchemas, table_schema_of
from transforms.timestamps import format_timestamp
from transforms.write import MergeUsers, WriteRows

ROWS = "rows"
_LOG = logging.getLogger(__name__)


def read_files(pipeline: beam.Pipeline, pattern: str) -> PCollection:
    """Lines of JSONL(.gz) files as RawMessages; bytes, so bad UTF-8 is a dead
    letter rather than a decode crash in the reader."""
    return (
        pipeline
        | "ReadFiles" >> ReadFromText(pattern, coder=BytesCoder())
        | "LinesToMessages" >> beam.FlatMap(line_to_message)
    )


class DeadLettersToRows(beam.DoFn):
    """Dead letters as rows of their dataset's dead-letter table."""

    def __init__(self, default_source: str, clock: Clock) -> None:
        self._default_source = default_source
        self._clock = clock

    def process(self, dead_letter: DeadLetter) -> Iterator[TableRow]:
        dataset = dead_letter_dataset(dead_letter.source, self._default_source)
        row = dead_letter_row(dead_letter, format_timestamp(self._clock()))
        yield TableRow(dataset, DEAD_LETTER_TABLE, row, DEAD_LETTER_SCHEMA)


def _is_users(row: TableRow) -> bool:
    return row.table == "users"


def write_to_bigquery(
    model: EventsToRowsResult, warehouse: WarehouseConfig, default_source: str, clock: Clock
) -> None:
    """The schema step (automatic mode), the writes, users MERGE and the dead letters."""
    early_dead = model.dead_letters | "DeadLettersToRows" >> beam.ParDo(
        DeadLettersToRows(default_source, clock)
    )
    all_rows = (model.rows, early_dead) | "RowsAndDeadLetters" >> beam.Flatten()

    if warehouse.auto_table_management:
        dead_letter_tables = model.rows | "DeadLetterTablePerDataset" >> beam.Map(
            lambda row: ((row.dataset, DEAD_LETTER_TABLE), DEAD_LETTER_SCHEMA)
        )
        schemas = (
            (all_rows | "TableSchemas" >> beam.Map(table_schema_of), dead_letter_tables)
            | "AllTableSchemas" >> beam.Flatten()
            | "UnionSchemaPerTable" >> beam.CombinePerKey(UnionSchemas())
            | "ApplySchemas" >> beam.ParDo(ApplySchemas(warehouse))
        )
        fitted = all_rows | "FitRows" >> beam.ParDo(FitRows(), AsDict(schemas)).with_outputs(
            DEAD_LETTERS, main=ROWS
        )
        rows, misfits = fitted[ROWS], fitted[DEAD_LETTERS]
    else:
        schemas = all_rows.pipeline | "NoSchemaStep" >> beam.Create([])
        rows = all_rows
        misfits = all_rows.pipeline | "NoMisfits" >> beam.Create([])

    users = rows | "UsersRows" >> beam.Filter(_is_users)
    tables = rows | "TableRows" >> beam.Filter(lambda row: not _is_users(row))
    _ = users | "MergeUsers" >> MergeUsers(warehouse, schemas)
    rejected = tables | "WriteRows" >> WriteRows(warehouse)
    late_dead = (
        (misfits, rejected)
        | "LateDeadLetters" >> beam.Flatten()
        | "LateDeadLettersToRows" >> beam.ParDo(DeadLettersToRows(default_source, clock))
    )
    lost = late_dead | "WriteDeadLetters" >> WriteRows(warehouse)
    _ = lost | "ReportLostDeadLetters" >> beam.Map(_report_lost)


def _report_lost(dead_letter: DeadLetter) -> None:
    """A dead letter that could not be stored either: counted and logged loudly."""
    Metrics.counter(METRICS_NAMESPACE, "dead_letters_not_stored").inc()
    _LOG.error(
        "dead letter could not be stored: %s %s", dead_letter.reason, dead_letter.error[:500]
    )


def build_graph(pipeline: beam.Pipeline, clock: Clock = utc_now) -> EventsToRowsResult:
    """Read -> event model -> sink, as the pipeline's options say."""
    options = pipeline.options.view_as(OpenTrackOptions)
    if not options.input:
        raise ValueError("--input is required: a file pattern of JSONL events")
    config = model_config(options)
    default_source = config.sources.default_source
    model = read_files(pipeline, options.input) | "EventModel" >> EventsToRows(config, clock)
    if options.output_dir:
        _ = (model.rows, model.dead_letters) | "WriteJsonLines" >> WriteJsonLines(
            options.output_dir, default_source
        )
    else:
        write_to_bigquery(model, warehouse_config(options), default_source, clock)
    return model
