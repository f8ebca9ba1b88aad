"""Property tests (hypothesis) of the pure chain and of the naming rules.

Rules under test (README "The row model", "Names", "Validation and dead
letters"):

* ``process_payload`` never raises, whatever the bytes;
* every output is a dead letter with a known reason, or a table row whose
  dataset, table and column names BigQuery accepts and whose values have the
  Python type their schema type needs (checks shared with test_hostile);
* one outcome per event: a single event gives rows (all with its id, but the
  ``users`` row, keyed by userId) or exactly one dead letter; a batch gives one
  outcome per item, or one dead letter for the whole line;
* naming: ``snake_case`` is idempotent and ``column_name`` / ``table_name``
  always give valid BigQuery names.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_hostile import (
    COLUMN_RE,
    LOADED,
    RECEIVED,
    TABLE_RE,
    check_output,
    primary,
)
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter
from transforms.model.naming import (
    RESERVED_COLUMN_PREFIXES,
    column_name,
    snake_case,
    table_name,
)
from transforms.model.normalize import TableRow
from transforms.model.timestamps import (
    TimestampError,
    format_timestamp,
    parse_timestamp,
    timestamp_text,
)

SETTINGS = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONFIG = ModelConfig()
CALLS = ["track", "identify", "page", "screen", "group", "alias"]

# --------------------------------------------------------------------------- strategies

HOSTILE_NAMES = st.sampled_from(
    [
        "", "!!!", "名前", "🔥", "userId", "user_id", "User ID", "id", "event", "loaded_at",
        "context_ip", "_PARTITIONTIME", "_TABLE_SUFFIX", "__root__", "a`; DROP TABLE x; --",
        "x' OR '1'='1", "`project.dataset.table`", "3rd Party", "a" * 400, "Tracks",
        "order_view", "HTTPServer", "v_2Beta", "_1a", "a.b", "é" * 300,
    ]
)  # fmt: skip
NAMES = st.one_of(
    st.text(max_size=24),
    HOSTILE_NAMES,
    st.text(string.ascii_letters + "_ -0123456789", max_size=40),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond INT64 and beyond u64
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        ["2024-05-01T12:00:00Z", "2024-05-01", "0000-01-01T00:00:00Z", "2024-13-45T99:99:99Z"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(NAMES, children, max_size=5)
    ),
    max_leaves=25,
)
any_json = st.recursive(
    st.one_of(scalars, st.floats()),  # NaN/Infinity give non-strict JSON
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)
iso_stamps = st.builds(
    lambda moment, sep, spec: moment.isoformat(sep=sep, timespec=spec),
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.one_of(st.none(), offsets),
    ),
    st.sampled_from(["T", " ", "t"]),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
)
timestamps = st.one_of(
    st.none(),
    iso_stamps,
    st.integers(0, 2**42),
    st.text(max_size=30),
    st.sampled_from(
        ["2024-05-01T12:00:00+14:00", "2024-W18-3T12:00:00Z", "Wed, 01 May 2024 12:00:00 +0000", ""]
    ),
)
identities = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.sampled_from(["", "  ", "u1"]),
)
texts_or_junk = st.one_of(
    st.none(),
    st.text(max_size=40),
    HOSTILE_NAMES,
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
objects_or_junk = st.one_of(
    st.none(),
    st.dictionaries(NAMES, json_values, max_size=8),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)


@st.composite
def segment_events(draw: st.DrawFn) -> dict[str, Any]:
    """A Segment-shaped event: known keys with arbitrary (often invalid) values."""
    event: dict[str, Any] = {}
    optional = {
        "type": st.one_of(
            st.sampled_from(CALLS + ["Track", "IDENTIFY", "purchase", ""]), st.none(), st.integers()
        ),
        "messageId": st.one_of(
            st.none(), st.text(max_size=20), st.text(min_size=250, max_size=260), st.integers()
        ),
        "userId": identities,
        "anonymousId": identities,
        "event": texts_or_junk,
        "name": texts_or_junk,
        "category": texts_or_junk,
        "groupId": identities,
        "previousId": identities,
        "properties": objects_or_junk,
        "traits": objects_or_junk,
        "context": objects_or_junk,
        "timestamp": timestamps,
        "originalTimestamp": timestamps,
        "sentAt": timestamps,
        "receivedAt": timestamps,
        "integrations": st.dictionaries(st.text(max_size=5), st.booleans(), max_size=2),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            event[key] = draw(strategy)
    # the spec's keys are usually present, so most events get past validation
    if draw(st.integers(0, 3)):
        event["type"] = draw(st.sampled_from(CALLS))
        event.setdefault("userId", "u1")
        event.setdefault("event", "Order Completed")
        event.setdefault("groupId", "g1")
        event.setdefault("previousId", "p1")
    extra = draw(st.dictionaries(NAMES, json_values, max_size=3))
    return {**extra, **event}


nonblank = st.one_of(st.text(min_size=1, max_size=30), HOSTILE_NAMES).filter(
    lambda s: bool(s.strip())
)
# README: ids may be integers ("accepted and written as text"). Here they stay within
# 64-bit integers so that the integer-size rule, tested on its own in
# test_integer_ids_of_any_size, does not hide other failures.
ids = st.one_of(nonblank, st.integers(-(2**63), 2**64 - 1))
maybe_stamp = st.one_of(st.none(), iso_stamps)


@st.composite
def well_formed_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event that satisfies every structural rule, with hostile content:
    arbitrary property/trait/context keys and values, odd but valid timestamps,
    any call-type casing, string or (unbounded) integer ids."""
    call = draw(st.sampled_from(CALLS))
    event: dict[str, Any] = {"type": draw(st.sampled_from([call, call.upper(), call.title()]))}
    if draw(st.booleans()):
        event["messageId"] = draw(st.text(min_size=1, max_size=60))
    event["userId"] = draw(ids) if call == "alias" else draw(st.one_of(st.none(), ids))
    if event["userId"] is None or draw(st.booleans()):
        event["anonymousId"] = draw(ids)
    if call == "track":
        event["event"] = draw(nonblank)
    if call == "group":
        event["groupId"] = draw(ids)
    if call == "alias":
        event["previousId"] = draw(ids)
    if call in ("page", "screen"):
        for key in ("name", "category"):
            event[key] = draw(st.one_of(st.none(), st.text(max_size=20)))
    for key in ("properties", "traits", "context"):
        event[key] = draw(st.one_of(st.none(), st.dictionaries(NAMES, json_values, max_size=8)))
    for key in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        event[key] = draw(maybe_stamp)
    return event


def encode(value: Any, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def run(payload: bytes, attributes: dict[str, str] | None = None) -> list[Any]:
    return process_payload(RawMessage(payload, attributes), RECEIVED, LOADED, CONFIG)


def assert_single_event_outcome(out: list[Any]) -> tuple[list[TableRow], list[DeadLetter]]:
    """(b) and (c) for a payload holding one event."""
    rows, letters = check_output(out)
    if letters:
        assert len(letters) == 1 and not rows, f"{len(letters)} dead letters, {len(rows)} rows"
    else:
        assert rows, "neither rows nor a dead letter"
        event_rows = [row for row in rows if row.table != "users"]
        assert len({row.row["id"] for row in event_rows}) == 1, "rows of one event with several ids"
        assert len(primary(rows)) == 1
        for users_row in (row for row in rows if row.table == "users"):
            (identify,) = [row for row in rows if row.table == "identifies"]
            assert users_row.row["id"] == identify.row["user_id"]
    return rows, letters


# --------------------------------------------------------------------------- (a) never raises


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(payload: bytes) -> None:
    assert_single_event_outcome(run(payload))


@SETTINGS
@given(any_json, st.booleans())
def test_arbitrary_json_values(value: Any, ascii_only: bool) -> None:
    out = run(encode(value, ascii_only))
    check_output(out)
    if not (type(value) is dict and "batch" in value and "type" not in value):
        assert_single_event_outcome(out)


@SETTINGS
@given(
    st.one_of(segment_events(), well_formed_events()),
    st.booleans(),
    st.one_of(st.none(), st.dictionaries(st.just("source"), NAMES, max_size=1)),
)
def test_segment_shaped_events(
    event: dict[str, Any], ascii_only: bool, attributes: dict[str, str] | None
) -> None:
    rows, _ = assert_single_event_outcome(run(encode(event, ascii_only), attributes))
    if rows:
        call = str(event["type"]).lower()
        tables = sorted(row.table for row in rows)
        expected = {
            "identify": ["identifies", "users"]
            if any("user_id" in r.row for r in rows)
            else ["identifies"],
            "page": ["pages"],
            "screen": ["screens"],
            "group": ["groups"],
            "alias": ["aliases"],
        }
        if call == "track":
            assert len(tables) == 2 and "tracks" in tables
            (event_table,) = primary(rows)
            assert TABLE_RE.fullmatch(event_table.table) and len(event_table.table) <= 1019
        else:
            assert tables == expected[call]
        assert len({row.dataset for row in rows}) == 1


# Rejections a structurally valid event may still get: a valid timestamp whose
# UTC form or skew correction leaves BigQuery's range, or content over the
# size / depth limits.
CONTENT_REASONS = {"invalid_timestamp", "payload_too_large", "too_deep"}


@SETTINGS
@given(well_formed_events(), st.booleans())
def test_well_formed_events_load(event: dict[str, Any], ascii_only: bool) -> None:
    rows, letters = assert_single_event_outcome(run(encode(event, ascii_only)))
    if letters:
        assert letters[0].reason in CONTENT_REASONS, (letters[0].reason, letters[0].error)
        return
    for row in rows:
        if row.table == "users":
            assert row.row["id"] == str(event["userId"])
            continue
        if "messageId" in event:
            assert row.row["id"] == event["messageId"]
        if event.get("userId") is not None:
            assert row.row["user_id"] == str(event["userId"])


@SETTINGS
@given(st.integers(), st.sampled_from(["userId", "anonymousId"]))
def test_integer_ids_are_text_when_exact_and_refused_beyond_64_bits(number: int, key: str) -> None:
    """README: integer ids within 64 bits are written as text; beyond, the parser has lost
    digits, so the event is an invalid_identity dead letter rather than a wrong id."""
    event = {"type": "track", "messageId": "m-1", "event": "Order Completed", key: number}
    rows, letters = assert_single_event_outcome(run(encode(event, False)))
    if -(2**63) <= number < 2**64:
        assert not letters, (letters[0].reason, letters[0].error)
        column = "user_id" if key == "userId" else "anonymous_id"
        assert {row.row[column] for row in rows} == {str(number)}
    else:
        assert [letter.reason for letter in letters] == ["invalid_identity"]


@SETTINGS
@given(
    st.lists(st.one_of(segment_events(), well_formed_events(), any_json), min_size=1, max_size=8),
    st.dictionaries(
        st.sampled_from(["sentAt", "context", "writeKey", "integrations"]), json_values, max_size=3
    ),
)
def test_batches_one_outcome_per_item(items: list[Any], envelope: dict[str, Any]) -> None:
    out = run(encode({**envelope, "batch": items}, False))
    rows, letters = check_output(out)
    whole_line_rejected = len(letters) == 1 and not rows
    assert whole_line_rejected or len(primary(rows)) + len(letters) == len(items)


# --------------------------------------------------------------------------- (d) naming

name_text = st.one_of(
    st.text(),
    st.text(string.ascii_letters + string.digits + "_ -.!`'é名", max_size=60),
    HOSTILE_NAMES,
)


@SETTINGS
@given(name_text)
def test_snake_case_is_idempotent(text: str) -> None:
    once = snake_case(text)
    assert snake_case(once) == once


@SETTINGS
@given(name_text)
def test_column_name_is_a_bigquery_column(text: str) -> None:
    name = column_name(text)
    assert COLUMN_RE.fullmatch(name), name
    assert not name.lower().startswith(RESERVED_COLUMN_PREFIXES), name


@SETTINGS
@given(st.one_of(name_text, st.text(min_size=1000, max_size=1200)))
def test_table_name_is_a_bigquery_table(text: str) -> None:
    name = table_name(text)
    assert TABLE_RE.fullmatch(name) and len(name) <= 1019, name


@st.composite
def timestamp_texts(draw: st.DrawFn) -> str:
    """ISO-8601 texts in the shapes clients send: plain UTC with 0-9 fraction digits, offsets,
    a space or lower-case separator, a lower-case zone."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    digits = draw(st.integers(min_value=0, max_value=9))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    separator = draw(st.sampled_from("TTt "))
    zone = draw(st.sampled_from(["Z", "z", "+00:00", "+05:30", "-08:00", ""]))
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S").rjust(19, "0")
    return f"{text}{'.' + fraction if digits else ''}{zone}"


@SETTINGS
@given(timestamp_texts())
def test_the_padded_text_of_a_plain_utc_timestamp_is_its_canonical_form(text: str) -> None:
    """timestamp_text's fast path (padding a plain UTC text) agrees with parse-and-format."""
    try:
        moment = parse_timestamp(text)
    except TimestampError:
        return  # out of range once the offset is applied: nothing to format
    assert timestamp_text(text, moment) == format_timestamp(moment) == reference_text(moment)


def reference_text(moment: datetime) -> str:
    """The canonical text spelled out field by field: what format_timestamp must equal."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:"
        f"{m.second:02d}.{m.microsecond:06d}Z"
    )


@SETTINGS
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_format_timestamp_is_the_canonical_utc_text(naive: datetime, offset_minutes: int) -> None:
    """Any aware instant, in any zone, formats as YYYY-MM-DDTHH:MM:SS.ffffffZ in UTC."""
    moment = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert format_timestamp(moment) == reference_text(moment)
