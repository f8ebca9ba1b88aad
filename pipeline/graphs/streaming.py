"""The streaming graph: Pub/Sub -> event model (deduplicated) -> live schema path -> BigQuery.

Built, never run, here. Step labels are stable: a running Dataflow job can be
updated in place only when they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage, ReadFromPubSub
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.pvalue import AsSingleton, PCollection
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from pipeline.graphs.options import OpenTrackOptions, OptionError, model_config, warehouse_config
from pipeline.warehouse.config import WarehouseConfig
from transforms.beam.event_model import (
    DEAD_LETTERS,
    Clock,
    EventsToRows,
    EventsToRowsResult,
    utc_now,
)
from transforms.beam.streaming import (
    FENCED,
    MUTATE,
    ApplyChanges,
    HoldRows,
    HoldWhileFenced,
    LoadSchemas,
    RouteBySchema,
    schema_not_visible,
)
from transforms.beam.write import (
    DeadLettersToRows,
    MergeUsers,
    WriteRows,
    failure_to_row,
    rejected_row_dead_letter,
    report_lost,
)
from transforms.model.chain import RawMessage
from transforms.model.normalize import TableRow

ROWS = "rows"


def pubsub_to_message(message: PubsubMessage) -> RawMessage:
    """Publish time stands in for receive time when the payload has no receivedAt."""
    return RawMessage(message.data, dict(message.attributes or {}), message.publish_time)


def _is_users(row: TableRow) -> bool:
    return row.table == "users"


class SyncSchemas(beam.PTransform):
    """Rows -> (rows fitted to their live tables, schema dead letters); rows of a table
    fenced for a rewrite wait in ``HoldWhileFenced`` until the mark is gone."""

    def __init__(
        self,
        warehouse: WarehouseConfig,
        schemas: PCollection | None,
        batch_seconds: float,
        drain_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._warehouse = warehouse
        self._schemas = schemas
        self._batch_seconds = batch_seconds
        self._drain_seconds = drain_seconds
        self._clock = clock  # processing time of the gathering (a test clock in TestStream)

    def expand(self, rows: PCollection) -> tuple[PCollection, PCollection]:
        side = [AsSingleton(self._schemas)] if self._schemas is not None else []
        # Typed (table, row) outputs: their str keys get a deterministic key coder.
        route = beam.ParDo(RouteBySchema(self._warehouse), *side)
        routed = rows | "Route" >> route.with_output_types(
            Any, **{MUTATE: tuple[str, Any]}
        ).with_outputs(MUTATE, main=ROWS)
        changed = (
            routed[MUTATE]
            | "GatherPerTable"
            >> beam.GroupIntoBatches(
                500, max_buffering_duration_secs=self._batch_seconds, clock=self._clock
            )
            | "ApplyChanges"
            >> beam.ParDo(ApplyChanges(self._warehouse, self._drain_seconds))
            .with_output_types(Any, **{DEAD_LETTERS: Any, FENCED: tuple[str, Any]})
            .with_outputs(DEAD_LETTERS, FENCED, main=ROWS)
        )
        released = changed[FENCED] | "HoldWhileFenced" >> beam.ParDo(
            HoldWhileFenced(self._warehouse, self._drain_seconds)
        ).with_outputs(DEAD_LETTERS, main=ROWS)
        fitted = (routed[ROWS], changed[ROWS], released[ROWS]) | "Fitted" >> beam.Flatten()
        dead = (changed[DEAD_LETTERS], released[DEAD_LETTERS]) | "SchemaDeadLetters" >> (
            beam.Flatten()
        )
        return fitted, dead


class RetryIfSchemaNotVisible(beam.PartitionFn):
    """Partition 0: a failure to retry (a column not yet visible); 1: a failure for good."""

    def partition_for(self, element: Any, num_partitions: int, *args: Any, **kwargs: Any) -> int:
        return 0 if schema_not_visible(element[2]) else 1


class WriteWithRetries(beam.PTransform):
    """Rows -> BigQuery, rows refused for a not-yet-visible column retried after
    each delay; returns the dead letters of rows refused for good."""

    def __init__(self, warehouse: WarehouseConfig, delays: tuple[float, ...]) -> None:
        super().__init__()
        self._warehouse = warehouse
        self._delays = delays

    def expand(self, rows: PCollection) -> PCollection:
        failures = rows | "Write" >> WriteRows(self._warehouse)
        dead = []
        for attempt, delay in enumerate(self._delays, start=1):
            retry, final = failures | f"Classify{attempt}" >> beam.Partition(
                RetryIfSchemaNotVisible(), 2
            )
            dead.append(final)
            failures = (
                retry
                | f"KeyForRetry{attempt}" >> beam.Map(lambda f: (str(f[0]), failure_to_row(f)))
                | f"Hold{attempt}" >> beam.ParDo(HoldRows(delay))
                | f"Rewrite{attempt}" >> WriteRows(self._warehouse)
            )
        dead.append(failures)
        return (
            dead
            | "RefusedForGood" >> beam.Flatten()
            | "ToDeadLetters" >> beam.Map(rejected_row_dead_letter)
        )


def _side_input_wanted(pipeline: beam.Pipeline) -> bool:
    choice = pipeline.options.view_as(OpenTrackOptions).schema_side_input
    if choice is not None:
        return choice
    runner = str(pipeline.options.view_as(StandardOptions).runner or "")
    return "Direct" not in runner


def build_streaming_graph(pipeline: beam.Pipeline, clock: Clock = utc_now) -> EventsToRowsResult:
    """Pub/Sub -> rows in BigQuery, as the pipeline's options say."""
    options = pipeline.options.view_as(OpenTrackOptions)
    if not options.subscription:
        raise OptionError("--subscription projects/P/subscriptions/S is required with --streaming")
    config = model_config(options)
    warehouse = warehouse_config(options)
    default_source = config.sources.default_source
    delays = tuple(float(d) for d in options.schema_retry_delays.split(",") if d.strip())

    model = (
        pipeline
        | "ReadPubSub" >> ReadFromPubSub(subscription=options.subscription, with_attributes=True)
        | "ToMessages" >> beam.Map(pubsub_to_message)
        | "EventModel" >> EventsToRows(config, clock, options.dedup_window_seconds)
    )
    early_dead = model.dead_letters | "DeadLettersToRows" >> beam.ParDo(
        DeadLettersToRows(default_source, clock)
    )
    rows = (model.rows, early_dead) | "RowsAndDeadLetters" >> beam.Flatten()

    schemas = None
    misfits = [pipeline | "NoMisfits" >> beam.Create([])]
    if warehouse.auto_table_management and _side_input_wanted(pipeline):
        schemas = (
            pipeline
            | "SchemaRefresh" >> PeriodicImpulse(fire_interval=warehouse.cache_ttl)
            | "LoadSchemas" >> beam.ParDo(LoadSchemas(warehouse))
            | "LatestSchemas"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )
    if warehouse.auto_table_management:
        rows, schema_dead = rows | "SyncSchemas" >> SyncSchemas(
            warehouse, schemas, options.mutation_batch_seconds, options.rewrite_drain_seconds
        )
        misfits.append(schema_dead)

    users = (
        rows
        | "UsersRows" >> beam.Filter(_is_users)
        | "UsersMicroBatches"
        >> beam.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.Repeatedly(
                trigger.AfterProcessingTime(max(1, int(options.users_merge_interval_seconds)))
            ),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
    )
    no_schemas = pipeline | "UsersSchemasFromTable" >> beam.Create([])
    _ = users | "MergeUsers" >> MergeUsers(warehouse, no_schemas)

    refused = (
        rows
        | "TableRows" >> beam.Filter(lambda row: not _is_users(row))
        | "WriteRows" >> WriteWithRetries(warehouse, delays)
    )
    late = (
        (*misfits, refused)
        | "LateDeadLetters" >> beam.Flatten()
        | "LateDeadLettersToRows" >> beam.ParDo(DeadLettersToRows(default_source, clock))
    )
    if warehouse.auto_table_management:
        late, late_misfits = late | "SyncDeadLetterSchemas" >> SyncSchemas(
            warehouse, schemas, options.mutation_batch_seconds, options.rewrite_drain_seconds
        )
        _ = late_misfits | "ReportLostMisfits" >> beam.Map(report_lost)
    lost = (
        late
        | "WriteDeadLetters" >> WriteRows(warehouse)
        | "LostToDeadLetters" >> beam.Map(rejected_row_dead_letter)
    )
    _ = lost | "ReportLostDeadLetters" >> beam.Map(report_lost)
    return model
