"""Streaming building blocks without a warehouse: holding rows for a retry, and
telling 'schema not yet visible' refusals from permanent ones."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.beam.streaming import HoldRows, schema_not_visible


def streaming_pipeline() -> test_pipeline.TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return test_pipeline.TestPipeline(runner="BundleBasedDirectRunner", options=options)


def clock_at_100() -> Timestamp:
    """Rows are held from processing time 100 (TestStream's clock starts at 0)."""
    return Timestamp(100)


def _held(advance_to: float) -> test_stream.TestStream:
    stream = (
        test_stream.TestStream()
        .add_elements([TimestampedValue(("shop.orders", {"id": n}), 0) for n in range(3)])
        .add_elements([TimestampedValue(("shop.pages", {"id": "p"}), 1)])
        .advance_processing_time(advance_to)
        .advance_watermark_to_infinity()
    )
    return stream


def test_rows_are_held_until_the_delay_has_passed() -> None:
    with streaming_pipeline() as pipeline:
        released = pipeline | _held(105) | beam.ParDo(HoldRows(10, now=clock_at_100))
        assert_that(released, equal_to([]))  # 105 < 100 + 10: still held


def test_held_rows_come_back_after_the_delay_all_of_them_once() -> None:
    with streaming_pipeline() as pipeline:
        released = pipeline | _held(111) | beam.ParDo(HoldRows(10, now=clock_at_100))
        assert_that(released | beam.Map(lambda row: row["id"]), equal_to([0, 1, 2, "p"]))


def test_no_such_field_is_transient_other_refusals_are_not() -> None:
    not_visible = [
        {"index": 0, "errors": [{"reason": "invalid", "message": "no such field: coupon."}]}
    ]
    invalid = [
        {
            "index": 0,
            "errors": [{"reason": "invalid", "message": "Cannot convert value to integer"}],
        }
    ]
    missing_table = [{"message": "Not found: Table p:d.t", "reason": "notFound"}]
    assert schema_not_visible(not_visible)
    assert not schema_not_visible(invalid)
    assert not schema_not_visible(missing_table)
