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

from pipeline.streaming_graph import ROWS, SyncSchemas
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SCHEMA_VERSION_LABEL, SchemaManager
from transforms.normalize import TableRow
from transforms.streaming import MUTATE, RouteBySchema

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
                [("signed_up", "s1", None), ("signed_up", "s2", 3.0),
                 ("signed_up", "s3", 2.5), ("pages", "p1", None)]
            ),
            label="rows",
        )
        assert_that(dead, equal_to([]), label="dead_letters")

    table = bq_client.get_table(f"{local_stack.project}.{dataset}.signed_up")
    assert {f.name: f.field_type for f in table.schema} == {
        "id": "STRING", "plan": "STRING", "seats": "FLOAT", "trial": "BOOLEAN"
    }
    assert table.labels[SCHEMA_VERSION_LABEL] == "1"  # one create with every column: no patch


def test_rows_known_to_the_side_input_go_straight_to_the_write(local_stack, bq_client) -> None:
    dataset = f"side_{uuid.uuid4().hex[:8]}"
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)
    SchemaManager(bq_client, local_stack.project).ensure(dataset, "pages", {**BASE, "path": "STRING"})
    known = {(dataset, "pages"): {**BASE, "path": "STRING"}}
    rows = [_row(dataset, "pages", "p1", path="/"), _row(dataset, "pages", "p2", title="new")]
    stream = (
        test_stream.TestStream()
        .add_elements([TimestampedValue(row, 0) for row in rows])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        side = pipeline | "Schemas" >> beam.Create([known])
        routed = (
            pipeline
            | stream
            | beam.ParDo(RouteBySchema(warehouse), AsSingleton(side)).with_outputs(MUTATE, main=ROWS)
        )
        assert_that(routed[ROWS] | "Direct" >> beam.Map(lambda r: r.row["id"]), equal_to(["p1"]),
                    label="direct")
        assert_that(
            routed[MUTATE] | "Mutate" >> beam.Map(lambda kv: (kv[0], kv[1].row["id"])),
            equal_to([(f"{dataset}.pages", "p2")]),
            label="mutation_path",
        )


def test_side_input_refresh_reads_every_managed_table_and_nothing_else(
    local_stack, bq_client
) -> None:
    from google.cloud import bigquery

    from transforms.streaming import load_managed_schemas

    managed = f"managed_{uuid.uuid4().hex[:8]}"
    manager = SchemaManager(bq_client, local_stack.project)
    manager.ensure(managed, "pages", {**BASE, "path": "STRING"})  # also makes pages_view
    manager.ensure(managed, "signed_up", {**BASE, "plan": "STRING"})
    foreign = f"foreign_{uuid.uuid4().hex[:8]}"
    bq_client.create_dataset(foreign)
    bq_client.create_table(
        bigquery.Table(f"{local_stack.project}.{foreign}.t", schema=[bigquery.SchemaField("x", "STRING")])
    )
    warehouse = WarehouseConfig(project=local_stack.project, endpoint=local_stack.bigquery_endpoint)

    schemas = load_managed_schemas(warehouse)

    mine = {key: schema for key, schema in schemas.items() if key[0] == managed}
    assert mine == {
        (managed, "pages"): {**BASE, "path": "STRING"},
        (managed, "signed_up"): {**BASE, "plan": "STRING"},
    }
    assert not any(key[0] == foreign for key in schemas)
