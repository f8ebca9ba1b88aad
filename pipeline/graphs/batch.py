"""Assemble the pipeline graph from options; never runs it (run.py does)."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io import ReadAllFromText, ReadFromText
from apache_beam.pvalue import AsDict, PCollection

from pipeline.graphs.options import OpenTrackOptions, OptionError, model_config, warehouse_config
from pipeline.warehouse.config import WarehouseConfig
from transforms.beam.event_model import (
    DEAD_LETTERS,
    Clock,
    EventsToRows,
    EventsToRowsResult,
    line_to_message,
    utc_now,
)
from transforms.beam.file_sink import WriteJsonLines
from transforms.beam.load_jobs import LoadRows
from transforms.beam.schema_sync import ApplySchemas, FitRows, UnionSchemas, table_schema_of
from transforms.beam.write import (
    DeadLettersToRows,
    InsertMissingById,
    MergeUsers,
    OneDeadLetterPerEvent,
    WriteRows,
    rejected_row_dead_letter,
    report_lost,
)
from transforms.model.deadletter import DEAD_LETTER_SCHEMA
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.normalize import TableRow

ROWS = "rows"
_LOG = logging.getLogger(__name__)


def read_files(pipeline: beam.Pipeline, patterns: str) -> PCollection:
    """Lines of JSONL(.gz) files as RawMessages; bytes, so bad UTF-8 is a dead
    letter rather than a decode crash in the reader. ``patterns`` is one file
    pattern or several separated by commas (a backfill's days); a pattern of
    several that matches nothing is allowed (a day without files)."""
    names = [p.strip() for p in patterns.split(",") if p.strip()]
    if len(names) == 1:
        lines = pipeline | "ReadFiles" >> ReadFromText(names[0], coder=BytesCoder())
    else:
        lines = (
            pipeline
            | "Patterns" >> beam.Create(names)
            | "ReadFiles" >> ReadAllFromText(coder=BytesCoder())  # no match: no lines
        )
    return lines | "LinesToMessages" >> beam.FlatMap(line_to_message)


def _is_users(row: TableRow) -> bool:
    return row.table == "users"


def write_rows(
    rows: PCollection, warehouse: WarehouseConfig, schemas: PCollection, label: str
) -> PCollection:
    """Rows -> BigQuery by the configured method; returns the dead letters of refused rows."""
    if warehouse.write_method == "FILE_LOADS":
        return rows | label >> LoadRows(warehouse, schemas)
    return (
        rows
        | label >> WriteRows(warehouse)
        | f"{label}Refused" >> beam.Map(rejected_row_dead_letter)
    )


def write_to_bigquery(
    model: EventsToRowsResult, warehouse: WarehouseConfig, default_source: str, clock: Clock
) -> None:
    """The schema step (automatic mode), the writes, users MERGE and the dead letters."""
    early_dead = model.dead_letters | "DeadLettersToRows" >> beam.ParDo(
        DeadLettersToRows(default_source, clock)
    )
    all_rows = (model.rows, early_dead) | "RowsAndDeadLetters" >> beam.Flatten()

    if warehouse.write_mode == "insert_missing_by_id" and not warehouse.auto_table_management:
        raise OptionError("--write_mode=insert_missing_by_id needs automatic table management")
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
    if warehouse.write_mode == "insert_missing_by_id":
        # Idempotent: a rerun adds nothing. Rows BigQuery refuses fail the MERGE, and the run.
        _ = tables | "InsertMissingById" >> InsertMissingById(warehouse, schemas)
        rejected = tables.pipeline | "NoRowLevelRejections" >> beam.Create([])
    else:
        rejected = write_rows(tables, warehouse, schemas, "WriteRows")
    late_dead = (
        (misfits, rejected)
        | "LateDeadLetters" >> beam.Flatten()
        | "OneDeadLetterPerEvent" >> OneDeadLetterPerEvent()
        | "LateDeadLettersToRows" >> beam.ParDo(DeadLettersToRows(default_source, clock))
    )
    if warehouse.write_mode == "insert_missing_by_id":
        _ = late_dead | "InsertMissingDeadLetters" >> InsertMissingById(warehouse, schemas)
        return
    lost = write_rows(late_dead, warehouse, schemas, "WriteDeadLetters")
    _ = lost | "ReportLostDeadLetters" >> beam.Map(report_lost)


def build_graph(
    pipeline: beam.Pipeline, clock: Clock = utc_now, output_label: str = ""
) -> EventsToRowsResult:
    """Read -> event model -> sink, as the pipeline's options say. ``output_label`` tells
    apart the files of the slices of one sliced run (``pipeline.graphs.slicing``)."""
    options = pipeline.options.view_as(OpenTrackOptions)
    if not options.input:
        raise OptionError("--input is required: a file pattern of JSONL events")
    config = model_config(options)
    default_source = config.sources.default_source
    model = read_files(pipeline, options.input) | "EventModel" >> EventsToRows(config, clock)
    if options.output_dir:
        _ = (model.rows, model.dead_letters) | "WriteJsonLines" >> WriteJsonLines(
            options.output_dir, default_source, output_label
        )
    else:
        write_to_bigquery(model, warehouse_config(options), default_source, clock)
    return model
