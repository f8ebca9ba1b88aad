"""TestPipeline tests of the EventsToRows composite: every output, dead letters included."""

from __future__ import annotations

import apache_beam as beam
import orjson
from apache_beam.testing.util import assert_that, equal_to

from bench.corpus import generate
from tests.conftest import RECEIVED, make_test_pipeline
from transforms.beam.event_model import EventsToRows, FixedClock
from transforms.model.chain import ModelConfig, RawMessage
from transforms.model.route import SourceConfig

CLOCK = FixedClock(RECEIVED)
PRIMARY_TABLES_EXCLUDED = ("tracks", "users")  # secondary rows of track/identify


def _message(event: object, **attributes: str) -> RawMessage:
    payload = event if isinstance(event, bytes) else orjson.dumps(event)
    return RawMessage(payload, attributes or None)


def _table_and_id(row) -> tuple[str, str, str]:  # noqa: ANN001 - TableRow
    return row.dataset, row.table, row.row["id"]


def _reason_and_id(dead_letter) -> tuple[str, str | None]:  # noqa: ANN001 - DeadLetter
    return dead_letter.reason, dead_letter.message_id


def test_each_call_type_and_each_failure_reach_their_outputs() -> None:
    messages = [
        _message({"type": "track", "event": "Order Completed", "userId": "u", "messageId": "t1"}),
        _message({"type": "identify", "userId": "u", "messageId": "i1", "traits": {"a": 1}}),
        _message({"type": "identify", "anonymousId": "a", "messageId": "i2"}),
        _message({"type": "page", "anonymousId": "a", "messageId": "p1", "name": "Home"}),
        _message({"type": "screen", "anonymousId": "a", "messageId": "s1"}, source="Mobile App"),
        _message({"type": "group", "userId": "u", "groupId": "g", "messageId": "g1"}),
        _message({"type": "alias", "userId": "u", "previousId": "a", "messageId": "a1"}),
        _message(b"{not json"),
        _message({"type": "track", "userId": "u", "messageId": "bad-1"}),
        _message({"type": "group", "userId": "u", "messageId": "bad-2"}),
        _message(
            {
                "batch": [
                    {"type": "track", "event": "Signed Up", "userId": "v", "messageId": "b1"},
                    {"type": "track", "event": "Signed Up", "messageId": "bad-3"},
                ]
            }
        ),
    ]
    config = ModelConfig(sources=SourceConfig(default_source="Production Site"))
    with make_test_pipeline() as pipeline:
        result = pipeline | beam.Create(messages) | EventsToRows(config, CLOCK)
        assert_that(
            result.rows | "RowKeys" >> beam.Map(_table_and_id),
            equal_to(
                [
                    ("production_site", "order_completed", "t1"),
                    ("production_site", "tracks", "t1"),
                    ("production_site", "identifies", "i1"),
                    ("production_site", "users", "u"),
                    ("production_site", "identifies", "i2"),
                    ("production_site", "pages", "p1"),
                    ("mobile_app", "screens", "s1"),
                    ("production_site", "groups", "g1"),
                    ("production_site", "aliases", "a1"),
                    ("production_site", "signed_up", "b1"),
                    ("production_site", "tracks", "b1"),
                ]
            ),
            label="rows",
        )
        assert_that(
            result.dead_letters | "DeadLetterKeys" >> beam.Map(_reason_and_id),
            equal_to(
                [
                    ("invalid_json", None),
                    ("missing_event", "bad-1"),
                    ("missing_group_id", "bad-2"),
                    ("missing_identity", "bad-3"),
                ]
            ),
            label="dead_letters",
        )


def test_rows_carry_load_time_from_the_clock_and_schema_for_every_column() -> None:
    event = {"type": "track", "event": "A", "userId": "u", "messageId": "m", "properties": {"n": 1}}
    with make_test_pipeline() as pipeline:
        result = pipeline | beam.Create([_message(event)]) | EventsToRows(clock=CLOCK)
        assert_that(
            result.rows
            | "LoadTimes"
            >> beam.Map(lambda r: (r.table, r.row["loaded_at"], set(r.row) == set(r.schema))),
            equal_to(
                [
                    ("a", "2026-11-05T12:00:00.000000Z", True),
                    ("tracks", "2026-11-05T12:00:00.000000Z", True),
                ]
            ),
            label="rows",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")


def _corpus_with_bad_lines() -> tuple[list[RawMessage], int, int]:
    """300 corpus events, 7 bad lines and a batch of 2 good + 1 bad item."""
    good_lines = generate(300, seed=11)
    bad_lines = [
        b"\xff\xfe not utf-8",
        b"{truncated",
        b"[]",
        b'{"type": "track", "userId": "u"}',
        b'{"type": "teleport", "userId": "u"}',
        b'{"type": "page", "anonymousId": "a", "timestamp": 12}',
        b'{"type": "page", "anonymousId": "a", "properties": ' + b"[" * 40 + b"]" * 40 + b"}",
    ]
    batch = orjson.dumps(
        {
            "batch": [
                {"type": "page", "anonymousId": "x", "messageId": "batch-good-1"},
                {"type": "alias", "anonymousId": "x", "previousId": "y"},
                {"type": "screen", "userId": "x", "messageId": "batch-good-2"},
            ]
        }
    )
    lines = list(good_lines)
    for position, bad in enumerate(bad_lines):
        lines.insert(position * 40 + 3, bad)
    lines.append(batch)
    input_events = len(good_lines) + len(bad_lines) + 3
    return [RawMessage(line) for line in lines], input_events, len(bad_lines) + 1


def test_every_input_event_is_rows_or_exactly_one_dead_letter() -> None:
    messages, input_events, expected_dead = _corpus_with_bad_lines()
    with make_test_pipeline() as pipeline:
        result = pipeline | beam.Create(messages) | EventsToRows(clock=CLOCK)
        primary_ids = (
            result.rows
            | "PrimaryRows" >> beam.Filter(lambda r: r.table not in PRIMARY_TABLES_EXCLUDED)
            | "Ids" >> beam.Map(lambda r: r.row["id"])
        )
        per_id = primary_ids | "RowsPerId" >> beam.combiners.Count.PerElement()
        assert_that(
            per_id | "IdsSeenMoreThanOnce" >> beam.Filter(lambda kv: kv[1] != 1),
            equal_to([]),
            label="each_event_once",
        )
        loaded = per_id | "LoadedEvents" >> beam.combiners.Count.Globally()
        dead = result.dead_letters | "DeadLetterCount" >> beam.combiners.Count.Globally()
        total = (loaded, dead) | "Both" >> beam.Flatten() | "Total" >> beam.CombineGlobally(sum)
        assert_that(total, equal_to([input_events]), label="rows_plus_dead_letters")
        assert_that(dead, equal_to([expected_dead]), label="dead_letters")
