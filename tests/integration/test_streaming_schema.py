"""The streaming schema path with TestStream against the real BigQuery emulator:
the side input, the routing, and the mutation path that applies merged changes once."""

from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import AsSingleton
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.graphs.streaming import ROWS, SyncSchemas
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SCHEMA_VERSION_LABEL, SchemaManager
from transforms.beam.streaming import MUTATE, ManagedTables, RouteBySchema
from transforms.model.normalize import TableRow

BASE = {"id": "STRING", "timestamp": "TIMESTAMP", "loaded_at": "TIMESTAMP"}


def streaming_pipeline() -> test_pipeline.TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return test_pipeline.TestPipeline(runner="BundleBasedDirectRunner", options=options)


def epoch_clock() -> float:
    """TestStream's processing-time clock starts at the epoch."""
    return 0.0


def _row(dataset: str, table: str, id_: str, **properties: object) -> TableRow:
    kinds = {bool: "BOOLEAN", int: "INTEGER", float: "FLOAT", str: "STRING"}
    schema = {"id": "STRING", **{k: kinds[type(v)] for k, v in properties.items()}}
    return TableRow(dataset, table, {"id": id_, **properties}, schema)


def test_a_burst_of_new_properties_is_applied_once_per_table(local_stack, bq_client) -> None:
    dataset = f"burst_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    rows = [
        _row(dataset, "signed_up", "s1", plan="free"),
        _row(dataset, "signed_up", "s2", seats=3),
        _row(dataset, "signed_up", "s3", trial=True, seats=2.5),
        _row(dataset, "pages", "p1", path="/"),
    ]
    stream = (
        test_stream.TestStream()
        .add_elements([TimestampedValue(row, 0) for row in rows])
        .advance_processing_time(5)  # past the 1 s gathering: the batch is released
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        fitted, dead = pipeline | stream | SyncSchemas(warehouse, None, 1.0, 0.0, epoch_clock)
        assert_that(
            fitted | beam.Map(lambda r: (r.table, r.row["id"], r.row.get("seats"))),
            equal_to(
                [
                    ("signed_up", "s1", None),
                    ("signed_up", "s2", 3.0),
                    ("signed_up", "s3", 2.5),
                    ("pages", "p1", None),
                ]
            ),
            label="rows",
        )
        assert_that(dead, equal_to([]), label="dead_letters")

    table = bq_client.get_table(f"{local_stack.project}.{dataset}.signed_up")
    assert {f.name: f.field_type for f in table.schema} == {
        "id": "STRING",
        "plan": "STRING",
        "seats": "FLOAT",
        "trial": "BOOLEAN",
    }
    assert table.labels[SCHEMA_VERSION_LABEL] == "1"  # one create with every column: no patch


def test_rows_known_to_the_side_input_go_straight_to_the_write(local_stack, bq_client) -> None:
    dataset = f"side_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    SchemaManager(bq_client, local_stack.project).ensure(
        dataset, "pages", {**BASE, "path": "STRING"}
    )
    known = {(dataset, "pages"): {**BASE, "path": "STRING"}}
    rows = [_row(dataset, "pages", "p1", path="/"), _row(dataset, "pages", "p2", title="new")]
    stream = (
        test_stream.TestStream()
        .add_elements([TimestampedValue(row, 0) for row in rows])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        side = pipeline | "Schemas" >> beam.Create([ManagedTables(known, {})])
        routed = (
            pipeline
            | stream
            | beam.ParDo(RouteBySchema(warehouse), AsSingleton(side)).with_outputs(
                MUTATE, main=ROWS
            )
        )
        assert_that(
            routed[ROWS] | "Direct" >> beam.Map(lambda r: r.row["id"]),
            equal_to(["p1"]),
            label="direct",
        )
        assert_that(
            routed[MUTATE] | "Mutate" >> beam.Map(lambda kv: (kv[0], kv[1].row["id"])),
            equal_to([(f"{dataset}.pages", "p2")]),
            label="mutation_path",
        )


def test_side_input_refresh_reads_every_managed_table_and_nothing_else(
    local_stack, bq_client
) -> None:
    from google.cloud import bigquery

    from transforms.beam.streaming import load_managed_tables

    managed = f"managed_{uuid.uuid4().hex[:8]}"
    manager = SchemaManager(bq_client, local_stack.project)
    manager.ensure(managed, "pages", {**BASE, "path": "STRING"})  # also makes pages_view
    manager.ensure(managed, "signed_up", {**BASE, "plan": "STRING"})
    foreign = f"foreign_{uuid.uuid4().hex[:8]}"
    bq_client.create_dataset(foreign)
    bq_client.create_table(
        bigquery.Table(
            f"{local_stack.project}.{foreign}.t", schema=[bigquery.SchemaField("x", "STRING")]
        )
    )
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)

    manager.mark_fence(managed, "signed_up", 4_000_000_000)
    tables = load_managed_tables(warehouse)
    schemas = tables.schemas

    mine = {key: schema for key, schema in schemas.items() if key[0] == managed}
    assert mine == {
        (managed, "pages"): {**BASE, "path": "STRING"},
        (managed, "signed_up"): {**BASE, "plan": "STRING"},
    }
    assert not any(key[0] == foreign for key in schemas)
    assert {key: d for key, d in tables.fences.items() if key[0] == managed} == {
        (managed, "signed_up"): 4_000_000_000
    }, "the side input carries the rewrite marks"


# -- the shared rewrite fence --------------------------------------------------------


def test_a_rewrite_mark_is_held_by_one_worker_until_cleared_or_lapsed(
    local_stack, bq_client
) -> None:
    from pipeline.warehouse.fence import FENCE_LABEL

    dataset = f"fence_{uuid.uuid4().hex[:8]}"
    first = SchemaManager(bq_client, local_stack.project)
    second = SchemaManager(bq_client, local_stack.project)  # another worker
    first.ensure(dataset, "orders", {**BASE, "amount": "INTEGER"})
    ref = f"{local_stack.project}.{dataset}.orders"

    assert first.mark_fence(dataset, "orders", 4_000_000_000) is None, "the mark is ours"
    assert bq_client.get_table(ref).labels[FENCE_LABEL] == "4000000000"
    assert second.mark_fence(dataset, "orders", 4_000_000_100) == 4_000_000_000, (
        "a second worker meets the live mark and does not take it"
    )
    assert second.read_fence(dataset, "orders") == 4_000_000_000

    first.clear_fence(dataset, "orders")
    assert FENCE_LABEL not in bq_client.get_table(ref).labels
    assert bq_client.get_table(ref).labels["managed_by"] == "opentrack", "other labels stay"
    assert second.read_fence(dataset, "orders") is None

    first.mark_fence(dataset, "orders", 1_000)  # a mark whose worker died long ago
    assert second.mark_fence(dataset, "orders", 4_000_000_000) is None, (
        "a lapsed mark is taken over"
    )


def test_rows_of_a_table_marked_by_another_worker_are_held_not_written(
    local_stack, bq_client
) -> None:
    dataset = f"held_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    other_worker = SchemaManager(bq_client, local_stack.project)
    other_worker.ensure(dataset, "orders", {**BASE, "amount": "INTEGER"})
    other_worker.ensure(dataset, "pages", {**BASE, "path": "STRING"})
    other_worker.mark_fence(dataset, "orders", 4_000_000_000)  # rewriting, far from done
    known = {
        (dataset, "orders"): {**BASE, "amount": "INTEGER"},
        (dataset, "pages"): {**BASE, "path": "STRING"},
    }
    rows = [
        _row(dataset, "orders", "o1", amount=1),
        _row(dataset, "orders", "o2", amount="x"),
        _row(dataset, "pages", "p1", path="/"),
    ]
    stream = (
        test_stream.TestStream()
        .add_elements([TimestampedValue(row, 0) for row in rows])
        .advance_processing_time(5)  # past the gathering: ApplyChanges sees the mark
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        # The refreshed side input carries the mark: o1 fits but is held; o2 needs a
        # rewrite, and the mutation path finds the mark with its own read.
        marks = ManagedTables(known, {(dataset, "orders"): 4_000_000_000})
        side = pipeline | "Schemas" >> beam.Create([marks])
        fitted, dead = pipeline | stream | SyncSchemas(warehouse, side, 1.0, 0.0, epoch_clock)
        assert_that(fitted | beam.Map(lambda r: r.row["id"]), equal_to(["p1"]), label="rows")
        assert_that(dead, equal_to([]), label="dead_letters")

    orders = bq_client.get_table(f"{local_stack.project}.{dataset}.orders")
    assert {f.name: f.field_type for f in orders.schema}["amount"] == "INTEGER", (
        "the held string did not start a second rewrite"
    )


def test_rows_of_a_table_in_a_marked_side_input_take_the_mutation_path(local_stack) -> None:
    dataset = f"marked_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    known = {(dataset, "pages"): {**BASE, "path": "STRING"}, (dataset, "docs"): dict(BASE)}
    marks = {(dataset, "pages"): 4_000_000_000, (dataset, "docs"): 1_000}  # live, lapsed
    rows = [_row(dataset, "pages", "p1", path="/"), _row(dataset, "docs", "d1")]
    with streaming_pipeline() as pipeline:
        side = pipeline | "Schemas" >> beam.Create([ManagedTables(known, marks)])
        routed = (
            pipeline
            | beam.Create(rows)
            | beam.ParDo(RouteBySchema(warehouse), AsSingleton(side)).with_outputs(
                MUTATE, main=ROWS
            )
        )
        assert_that(
            routed[ROWS] | "Direct" >> beam.Map(lambda r: r.row["id"]),
            equal_to(["d1"]),
            label="direct",
        )
        assert_that(
            routed[MUTATE] | "Mutate" >> beam.Map(lambda kv: (kv[0], kv[1].row["id"])),
            equal_to([(f"{dataset}.pages", "p1")]),
            label="mutation_path",
        )
