"""Deduplication in the stream, with TestStream (event time = publish time)."""

from __future__ import annotations

import apache_beam as beam
import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from tests.conftest import RECEIVED
from transforms.beam.event_model import EventsToRows, FixedClock
from transforms.model.chain import RawMessage


def streaming_pipeline() -> test_pipeline.TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return test_pipeline.TestPipeline(runner="BundleBasedDirectRunner", options=options)


def _page(message_id: str, source: str | None = None) -> RawMessage:
    event = {"type": "page", "anonymousId": "a", "messageId": message_id, "name": "Home"}
    return RawMessage(orjson.dumps(event), {"source": source} if source else None)


@pytest.mark.parametrize("state", ["keyed", "in_process", "auto"])
def test_repeats_within_the_window_load_once_and_later_repeats_again(state: str) -> None:
    """Both places the seen ids can live keep the same rule (auto: in_process here)."""
    stream = (
        test_stream.TestStream()
        .add_elements(
            [
                TimestampedValue(_page("m1"), 0),
                TimestampedValue(_page("m2"), 5),
                TimestampedValue(_page("m1"), 10),  # duplicate within 60 s: dropped
                TimestampedValue(_page("m1", source="Other Site"), 12),  # other dataset: kept
                TimestampedValue(_page("m2"), 50),  # duplicate within 60 s: dropped
            ]
        )
        .advance_watermark_to(200)
        .add_elements([TimestampedValue(_page("m1"), 201)])  # past the window: loaded again
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        result = (
            pipeline
            | stream
            | EventsToRows(clock=FixedClock(RECEIVED), dedup_window_seconds=60, dedup_state=state)
        )
        assert_that(
            result.rows | beam.Map(lambda r: (r.dataset, r.row["id"])),
            equal_to(
                [
                    ("opentrack", "m1"),
                    ("opentrack", "m2"),
                    ("other_site", "m1"),
                    ("opentrack", "m1"),
                ]
            ),
            label="rows",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")
