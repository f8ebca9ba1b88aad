"""TestPipeline tests of the batch schema step's pure Beam parts (no warehouse needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.pvalue import AsDict
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import make_test_pipeline
from transforms.beam.event_model import DEAD_LETTERS
from transforms.beam.schema_sync import FitRows, UnionSchemas, table_schema_of
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.normalize import TableRow

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LOADED = "2024-05-01T12:00:05.000000Z"


def _row(table: str, row: dict, schema: dict) -> TableRow:
    return TableRow("shop", table, row, schema)


ROWS = [
    _row("orders", {"id": "1", "total": 3}, {"id": "STRING", "total": "INTEGER"}),
    _row("orders", {"id": "2", "total": 2.5}, {"id": "STRING", "total": "FLOAT"}),
    _row("orders", {"id": "3", "paid": True}, {"id": "STRING", "paid": "BOOLEAN"}),
    _row("orders", {"id": "4", "paid": "yes"}, {"id": "STRING", "paid": "STRING"}),
    _row("wide", {"id": "5", "c9999": "x"}, {"id": "STRING", "c9999": "STRING"}),
    _row("wide", {"id": "6"}, {"id": "STRING"}),
]


def test_union_schema_per_table_widens_column_by_column() -> None:
    with make_test_pipeline() as pipeline:
        unions = (
            pipeline
            | beam.Create(ROWS)
            | beam.Map(table_schema_of)
            | beam.CombinePerKey(UnionSchemas())
        )
        assert_that(
            unions,
            equal_to(
                [
                    (("shop", "orders"), {"id": "STRING", "total": "FLOAT", "paid": "STRING"}),
                    (("shop", "wide"), {"id": "STRING", "c9999": "STRING"}),
                ]
            ),
        )


def test_fit_rows_coerces_to_the_final_schema_and_dead_letters_misfits() -> None:
    final = [
        (("shop", "orders"), ({"id": "STRING", "total": "FLOAT", "paid": "STRING"}, {})),
        (("shop", "wide"), ({"id": "STRING"}, {"c9999": "over the 10000-column limit"})),
    ]
    event = b'{"type":"track","event":"Orders","messageId":"7","properties":{"total":"many"}}'
    misfit = _row("orders", {"id": "7", "total": "many"}, {"id": "STRING", "total": "STRING"})
    misfit = misfit._replace(event=event)
    with make_test_pipeline() as pipeline:
        schemas = pipeline | "Schemas" >> beam.Create(final)
        fitted = (
            pipeline
            | "Rows" >> beam.Create([*ROWS, misfit])
            | beam.ParDo(FitRows(), AsDict(schemas)).with_outputs(DEAD_LETTERS, main="rows")
        )
        assert_that(
            fitted.rows | "Values" >> beam.Map(lambda r: (r.table, sorted(r.row.items()))),
            equal_to(
                [
                    ("orders", [("id", "1"), ("total", 3.0)]),
                    ("orders", [("id", "2"), ("total", 2.5)]),
                    ("orders", [("id", "3"), ("paid", "true")]),
                    ("orders", [("id", "4"), ("paid", "yes")]),
                    ("wide", [("id", "6")]),
                ]
            ),
            label="rows",
        )
        assert_that(
            fitted[DEAD_LETTERS]
            | "Reasons" >> beam.Map(lambda d: (d.stage, d.reason, d.message_id, d.payload)),
            equal_to(
                [
                    # a row without its event (not an event's) keeps the row
                    ("schema", "column_limit", "5", '{"id":"5","c9999":"x"}'),
                    # an event's row: the event as received, so replay re-feeds it
                    ("schema", "schema_mismatch", "7", event.decode()),
                ]
            ),
            label="dead_letters",
        )


def test_a_timestamp_in_a_column_that_ends_string_keeps_the_text_it_was_sent_as() -> None:
    payloads = [
        b'{"type":"track","event":"Signed Up","messageId":"a","userId":"u",'
        b'"properties":{"at":"2024-01-01T10:00:00+02:00","since":"2024-01-01 10:00:00Z"}}',
        b'{"type":"track","event":"Signed Up","messageId":"b","userId":"u",'
        b'"properties":{"at":"never","since":"2024-01-01T08:00:00Z"}}',
    ]
    rows = [
        row
        for payload in payloads
        for row in process_payload(RawMessage(payload), RECEIVED, LOADED, ModelConfig())
        if row.table == "signed_up"
    ]
    # The two rows union to at: STRING (a timestamp and "never"), since: TIMESTAMP.
    with make_test_pipeline() as pipeline:
        unions = (
            pipeline
            | "Rows" >> beam.Create(rows)
            | beam.Map(table_schema_of)
            | beam.CombinePerKey(UnionSchemas())
            | beam.Map(lambda kv: (kv[0], (kv[1], {})))
        )
        fitted = (
            pipeline
            | "Again" >> beam.Create(rows)
            | beam.ParDo(FitRows(), AsDict(unions)).with_outputs(DEAD_LETTERS, main="rows")
        )
        assert_that(
            fitted.rows | beam.Map(lambda r: (r.row["id"], r.row["at"], r.row["since"])),
            equal_to(
                [
                    ("a", "2024-01-01T10:00:00+02:00", "2024-01-01T10:00:00.000000Z"),
                    ("b", "never", "2024-01-01T08:00:00.000000Z"),
                ]
            ),
            label="rows",
        )
        assert_that(fitted[DEAD_LETTERS], equal_to([]), label="no_dead_letters")
