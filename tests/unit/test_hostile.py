"""A catalogue of hostile payloads through the whole pure chain
(``transforms.model.chain.process_payload``), each with its outcome written by hand.

Expectations come from README.md ("The row model", "Names", "Validation and
dead letters") and the docstrings of transforms.model.naming / validate / normalize /
infer / timestamps, never from running the code. Where the documents leave a
choice open the test says which reading it takes (RFC 8259 for JSON, ISO 8601
with the RFC 3339 profile for timestamps).

Every case asserts:
* the dead-letter reasons (a multiset) and the tables of its rows (with counts);
* for the tables it lists, the property/trait columns exactly, with their
  BigQuery type and value, and selected standard/context columns;
* for every row: dataset, table and column names valid in BigQuery (and no
  reserved column prefix), row and schema on the same columns, every value of
  the Python type its schema type requires;
* the count invariant: events with rows + dead letters == input events (for
  the case and for the whole catalogue).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest

from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter, Reason
from transforms.model.naming import RESERVED_COLUMN_PREFIXES
from transforms.model.normalize import TableRow
from transforms.model.route import SourceConfig
from transforms.model.validate import Limits

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
R = "2024-05-01T12:00:00.000000Z"
LOADED = "2024-05-01T12:00:05.000000Z"
KIB = 1024
MB = 1_000_000

# --------------------------------------------------------------------------- BigQuery's rules

TABLE_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")
DATASET_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")
COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_TEXTS = {"NaN", "Infinity", "-Infinity"}
KNOWN_REASONS = {reason.value for reason in Reason}
SECONDARY_TABLES = {"tracks", "users"}  # second row of an event counted elsewhere
# The columns of the row model that are not properties/traits (README tables).
STANDARD = {
    "id", "anonymous_id", "user_id", "received_at", "sent_at", "original_timestamp",
    "timestamp", "uuid_ts", "loaded_at", "event", "event_text", "name", "category",
    "group_id", "previous_id",
}  # fmt: skip
USERS_STANDARD = {"id", "received_at", "timestamp", "uuid_ts", "loaded_at"}


def assert_value_fits(column_type: str, value: Any, where: str) -> None:
    """A value of the Python type BigQuery's JSON insert wants for ``column_type``."""
    assert value is not None, f"{where}: None written (nulls make no column)"
    if column_type == "STRING":
        assert type(value) is str, f"{where}: STRING holds {type(value).__name__}"
        value.encode("utf-8")  # no lone surrogates: BigQuery takes UTF-8 only
    elif column_type == "INTEGER":
        assert type(value) is int, f"{where}: INTEGER holds {type(value).__name__}"
        assert -(2**53) <= value <= 2**53, f"{where}: {value} past 2**53 without the mark"
    elif column_type == "INTEGER_BEYOND_FLOAT64":  # an INTEGER column that may not go FLOAT
        assert type(value) is int, f"{where}: INTEGER holds {type(value).__name__}"
        assert INT64_MIN <= value <= INT64_MAX, f"{where}: {value} outside INT64"
        assert not -(2**53) <= value <= 2**53, f"{where}: {value} marked but exact in FLOAT64"
    elif column_type == "FLOAT":
        if type(value) is str:
            assert value in FLOAT_TEXTS, f"{where}: FLOAT text {value!r}"
        else:
            assert type(value) is float, f"{where}: FLOAT holds {type(value).__name__}"
            assert math.isfinite(value), f"{where}: {value!r}"
    elif column_type == "BOOLEAN":
        assert type(value) is bool, f"{where}: BOOLEAN holds {type(value).__name__}"
    elif column_type == "TIMESTAMP":
        assert type(value) is str and TIMESTAMP_RE.fullmatch(value), f"{where}: {value!r}"
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")  # a real instant
    else:
        raise AssertionError(f"{where}: unknown type {column_type!r}")


def assert_bigquery_row(row: TableRow) -> None:
    """Names and values of one row are what BigQuery accepts."""
    assert DATASET_RE.fullmatch(row.dataset), f"dataset {row.dataset!r}"
    assert TABLE_RE.fullmatch(row.table), f"table {row.table[:80]!r}"
    assert set(row.row) == set(row.schema), f"{row.table}: row and schema differ"
    for column, value in row.row.items():
        assert type(column) is str and COLUMN_RE.fullmatch(column), f"column {column[:80]!r}"
        assert not column.lower().startswith(RESERVED_COLUMN_PREFIXES), f"reserved {column!r}"
        assert_value_fits(row.schema[column], value, f"{row.table}.{column}")


def assert_dead_letter(letter: DeadLetter) -> None:
    assert letter.reason in KNOWN_REASONS, letter.reason
    assert letter.stage in {"validate", "normalize"}, letter.stage
    assert type(letter.payload) is str and type(letter.payload_truncated) is bool
    assert letter.reason != "internal_error", f"internal error: {letter.error}"


def check_output(out: list[Any]) -> tuple[list[TableRow], list[DeadLetter]]:
    rows = [item for item in out if isinstance(item, TableRow)]
    letters = [item for item in out if isinstance(item, DeadLetter)]
    assert len(rows) + len(letters) == len(out), "an output that is neither row nor dead letter"
    for row in rows:
        assert_bigquery_row(row)
    for letter in letters:
        assert_dead_letter(letter)
    return rows, letters


def primary(rows: list[TableRow]) -> list[TableRow]:
    return [row for row in rows if row.table not in SECONDARY_TABLES]


# --------------------------------------------------------------------------- expectations


def h(text: str) -> str:
    """README "Names": 8 hex digits of the SHA-256 of a name."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def S(value: Any) -> tuple[str, Any]:
    return ("STRING", value)


def I(value: int) -> tuple[str, Any]:
    return ("INTEGER", value)


def W(value: int) -> tuple[str, Any]:
    return "INTEGER_BEYOND_FLOAT64", value


def F(value: float) -> tuple[str, Any]:
    return ("FLOAT", value)


def B(value: bool) -> tuple[str, Any]:
    return ("BOOLEAN", value)


def TS(value: str) -> tuple[str, Any]:
    return ("TIMESTAMP", value)


class Tbl(NamedTuple):
    """One expected row: its property/trait columns exactly (None: not checked)
    and a subset of its standard and context columns (value or predicate)."""

    props: dict[str, tuple[str, Any]] | None
    std: dict[str, Any]
    absent: frozenset[str] = frozenset()


def tbl(
    props: dict[str, tuple[str, Any]] | None = None, absent: tuple[str, ...] = (), **std: Any
) -> Tbl:
    return Tbl(props, std, frozenset(absent))


class Case(NamedTuple):
    id: str
    payload: bytes
    reasons: list[str]
    tables: dict[str, Tbl | int]  # an int: only the number of rows of that table
    events: int = 1
    attributes: Mapping[str, str] | None = None
    config: ModelConfig | None = None
    dataset: str = "opentrack"
    check: Callable[[list[TableRow], list[DeadLetter]], None] | None = None
    unnamed: int = 0  # rows in tables not listed (their names are checked by ``check``)
    published: bool = False  # a Pub/Sub message published at RECEIVED, not a file line


def J(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def trk(**fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "event": "Order Completed",
        **fields,
    }


def props(**kw: Any) -> bytes:
    return J(trk(properties=kw))


def pd(mapping: dict[str, Any]) -> bytes:
    """A track whose properties are ``mapping`` (keys no Python identifier can be)."""
    return J(trk(properties=mapping))


def raw_props(text: str) -> bytes:
    """A track whose properties object is the raw JSON ``text``."""
    return (
        '{"type":"track","messageId":"m-1","userId":"u1","event":"Order Completed",'
        f'"properties":{text}}}'
    ).encode("utf-8", "surrogatepass")


def track_rows(
    p: dict[str, tuple[str, Any]] | None, table: str = "order_completed", absent=(), **std: Any
) -> dict[str, Tbl]:
    """A track: its event table with ``p`` and ``tracks`` with no properties."""
    return {
        table: tbl(p, absent, event=table, **std),
        "tracks": tbl({}, absent, event=table, **std),
    }


def nest_obj(levels: int) -> str:
    return '{"n":' * levels + "1" + "}" * levels


def nest_arr(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def is_uuid5(value: str) -> bool:
    return uuid.UUID(value).version == 5


def bad(case_id: str, payload: bytes, reason: str, **kw: Any) -> Case:
    return Case(case_id, payload, [reason], {}, **kw)


def ok(case_id: str, payload: bytes, tables: dict[str, Tbl | int], **kw: Any) -> Case:
    return Case(case_id, payload, [], tables, **kw)


BIG_CONFIG = ModelConfig(limits=Limits(max_event_bytes=2 * MB, max_batch_bytes=2 * MB))
PROPS_20K = {f"p{i}": i for i in range(20_000)}
LONG_KEY = "a" * 400
LONG_EVENT = "a" * 1500


def _ten_mb_check(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    (letter,) = letters
    assert letter.payload_truncated is True
    assert len(letter.payload) <= 1_048_576  # "cut at 1 MB"


def _escaped_payload_check(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    (letter,) = letters
    assert "\\xff" in letter.payload  # "invalid UTF-8 escaped"
    assert letter.payload_truncated is False


def _long_event_check(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    (table,) = {row.table for row in primary(rows)}
    assert len(table) <= 1019 and table.startswith("a" * 1000)  # room for "_view"
    for row in rows:
        assert row.row["event"] == table and row.row["event_text"] == LONG_EVENT


def _long_dataset_check(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    (dataset,) = {row.dataset for row in rows}
    assert len(dataset) <= 1024 and dataset.startswith("src_" * 200)  # "cut with a hash"


def _batch_1000_check(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    assert sorted(row.row["id"] for row in rows) == sorted(f"b{i}" for i in range(1000))


def _generated_id_stable(rows: list[TableRow], letters: list[DeadLetter]) -> None:
    again = process_payload(
        RawMessage(J(trk(messageId=None)), None), RECEIVED, LOADED, ModelConfig()
    )
    assert {r.row["id"] for r in again} == {r.row["id"] for r in rows}  # replay keeps the id


# --------------------------------------------------------------------------- the catalogue

CASES: list[Case] = [
    # ---- encoding and JSON syntax (README: invalid_encoding / invalid_json / not_an_object)
    bad(
        "utf8-invalid-byte",
        b'{"type":"track","event":"\xff"}',
        "invalid_encoding",
        check=_escaped_payload_check,
    ),
    bad("utf8-overlong-slash", b'{"type":"track","event":"\xc0\xaf"}', "invalid_encoding"),
    bad("utf8-truncated-sequence", b'{"type":"track","event":"\xe2\x82"}', "invalid_encoding"),
    bad("utf8-encoded-surrogate", b'{"type":"track","event":"\xed\xa0\x80"}', "invalid_encoding"),
    bad("utf16-payload-with-bom", '{"type":"track"}'.encode("utf-16"), "invalid_encoding"),
    bad("lone-high-surrogate-value", raw_props('{"a":"\\ud800"}'), "invalid_json"),
    bad("lone-low-surrogate-value", raw_props('{"a":"x\\udc00y"}'), "invalid_json"),
    bad("lone-surrogate-key", raw_props('{"\\ud800":1}'), "invalid_json"),
    bad(
        "lone-surrogate-event-name",
        b'{"type":"track","messageId":"m-1","userId":"u1","event":"\\udbff"}',
        "invalid_json",
    ),
    ok(
        "surrogate-pair-escape-is-fine",
        raw_props('{"smile":"\\ud83d\\ude00"}'),
        track_rows({"smile": S("\U0001f600")}),
    ),
    bad("nan-literal", raw_props('{"x":NaN}'), "invalid_json"),
    bad("infinity-literal", raw_props('{"x":Infinity}'), "invalid_json"),
    bad("minus-infinity-literal", raw_props('{"x":-Infinity}'), "invalid_json"),
    bad("float-overflows-double", raw_props('{"x":1e400}'), "invalid_json"),
    bad("negative-float-overflows-double", raw_props('{"x":-1e400}'), "invalid_json"),
    bad("bom-at-start", b"\xef\xbb\xbf" + J(trk()), "invalid_json"),
    bad("trailing-garbage", J(trk()) + b"xyz", "invalid_json"),
    bad("two-objects-one-line", J(trk()) + J(trk(messageId="m-2")), "invalid_json"),
    bad(
        "trailing-comma",
        b'{"type":"track","messageId":"m-1","userId":"u1","event":"E",}',
        "invalid_json",
    ),
    bad("single-quotes", b"{'type':'track'}", "invalid_json"),
    bad("js-comment", b'{"type":"track"} // c', "invalid_json"),
    bad("empty-payload", b"", "invalid_json"),
    bad("whitespace-only", b" \t ", "invalid_json"),
    ok("trailing-crlf-is-json-whitespace", J(trk()) + b"\r\n", track_rows({})),
    bad("top-level-string", b'"track"', "not_an_object"),
    bad("top-level-number", b"42", "not_an_object"),
    bad("top-level-array", b"[" + J(trk()) + b"]", "not_an_object"),
    bad("top-level-null", b"null", "not_an_object"),
    bad("top-level-true", b"true", "not_an_object"),
    # ---- numbers (README "Values and types": int -> INTEGER, FLOAT outside INT64)
    ok("int64-max-stays-integer", props(n=2**63 - 1), track_rows({"n": W(2**63 - 1)})),
    ok("int64-min-stays-integer", props(n=-(2**63)), track_rows({"n": W(-(2**63))})),
    ok("int-2pow53-plain-integer", props(n=2**53), track_rows({"n": I(2**53)})),
    ok(
        "int-2pow53-plus-1-marked-beyond-float64",
        props(n=2**53 + 1),
        track_rows({"n": W(2**53 + 1)}),
    ),
    ok(
        "int-4611686018427387905-keeps-digits",
        props(n=4611686018427387905),
        track_rows({"n": W(4611686018427387905)}),
    ),
    # Past INT64 the parser still gives an int up to 2**64 - 1: its digits, as text.
    ok(
        "int-2pow63-becomes-its-digits", props(n=2**63), track_rows({"n": S("9223372036854775808")})
    ),
    ok(
        "int-2pow64-minus-1-becomes-its-digits",
        props(n=2**64 - 1),
        track_rows({"n": S("18446744073709551615")}),
    ),
    ok(
        "int-below-int64-becomes-float",
        props(n=-(2**63) - 1),
        track_rows({"n": F(-9.223372036854775808e18)}),
    ),
    ok("int-10pow30-becomes-float", props(n=10**30), track_rows({"n": F(1e30)})),
    ok("float-0.1+0.2", props(x=0.1 + 0.2), track_rows({"x": F(0.30000000000000004)})),
    ok("float-1e308", props(x=1e308), track_rows({"x": F(1e308)})),
    ok("float-5e-324-subnormal", props(x=5e-324), track_rows({"x": F(5e-324)})),
    ok("float-underflow-to-zero", raw_props('{"x":1e-400}'), track_rows({"x": F(0.0)})),
    ok(
        "float-1.0-is-float",
        raw_props('{"x":1.0,"y":1E2}'),
        track_rows({"x": F(1.0), "y": F(100.0)}),
    ),
    ok("bool-is-not-integer", props(t=True, f=False), track_rows({"t": B(True), "f": B(False)})),
    ok("user-id-int-2pow63", J(trk(userId=2**63)), track_rows({}, user_id="9223372036854775808")),
    # Ids must be exact: integers beyond 64 bits reach the parser as doubles (digits lost),
    # so they are refused rather than stored wrong (README, "Validation and dead letters").
    bad("user-id-int-10pow30", J(trk(userId=10**30)), "invalid_identity"),
    bad("user-id-int-below-int64", J(trk(userId=-(2**63) - 1)), "invalid_identity"),
    bad("user-id-int-2pow64", J(trk(userId=2**64)), "invalid_identity"),
    ok(
        "user-id-int-2pow64-minus-1",
        J(trk(userId=2**64 - 1)),
        track_rows({}, user_id=str(2**64 - 1)),
    ),
    bad("user-id-float", J(trk(userId=1.5)), "invalid_identity"),
    bad("user-id-bool", J(trk(userId=True)), "invalid_identity"),
    bad("user-id-object", J(trk(userId={"id": 1})), "invalid_identity"),
    # ---- nesting and size (too_deep over 32 levels; 32 KiB events, 500 KiB batches)
    bad("nesting-1000-objects", raw_props('{"a":' + nest_obj(1000) + "}"), "too_deep"),
    bad("nesting-1000-arrays", raw_props('{"a":' + nest_arr(1000) + "}"), "too_deep"),
    bad("nesting-2000-objects", raw_props('{"a":' + nest_obj(2000) + "}"), "too_deep"),
    bad(
        "line-10mb",
        b'{"type":"track","properties":{"pad":"' + b"x" * (10 * MB) + b'"}}',
        "payload_too_large",
        check=_ten_mb_check,
    ),
    bad("props-20000-default-limits", pd(PROPS_20K), "payload_too_large"),
    ok(
        "props-20000-raised-limit",
        pd(PROPS_20K),
        track_rows({f"p{i}": I(i) for i in range(20_000)}),
        config=BIG_CONFIG,
    ),
    bad("event-33kib", props(pad="x" * 33 * KIB), "payload_too_large"),
    # ---- property names (README "Names")
    ok("key-empty", pd({"": 1}), track_rows({f"_{h('')}": I(1)})),
    ok(
        "key-punctuation-only",
        pd({"!!!": "x", "-_-": "y"}),
        track_rows({f"_{h('!!!')}": S("x"), f"_{h('-_-')}": S("y")}),
    ),
    ok(
        "key-unicode-only",
        pd({"名前": "Ada", "🔥": 1}),
        track_rows({f"_{h('名前')}": S("Ada"), f"_{h('🔥')}": I(1)}),
    ),
    ok(
        "key-non-ascii-letters-dropped",
        pd({"café": 1, "naïve": 2}),
        track_rows({"caf": I(1), "na_ve": I(2)}),
    ),
    ok("key-400-chars", pd({LONG_KEY: 1}), track_rows({"a" * 291 + "_" + h(LONG_KEY): I(1)})),
    ok("key-400-unicode-chars", pd({"é" * 400: 1}), track_rows({f"_{h('é' * 400)}": I(1)})),
    ok("key-leading-digit", pd({"3rd Party": 1}), track_rows({"_3rd_party": I(1)})),
    ok(
        "keys-userId-user_id-User-ID",
        pd({"userId": "p1", "user_id": "p2", "User ID": "p3"}),
        track_rows({"properties_user_id": S("p1")}, user_id="u1"),
    ),
    ok(
        "keys-firstName-first_name-First-Name",
        pd({"firstName": "a", "first_name": "b", "First Name": "c"}),
        track_rows({"first_name": S("a")}),
    ),
    ok(
        "keys-differ-in-case",
        pd({"Email": "a", "email": "b", "EMAIL": "c"}),
        track_rows({"email": S("a")}),
    ),
    ok("key-dotted-vs-nested", pd({"a.b": 1, "a": {"b": 2}}), track_rows({"a_b": I(1)})),
    ok(
        "key-control-chars",
        pd({"a\u0000b": 1, "c\nd\te": 2}),
        track_rows({"a_b": I(1), "c_d_e": I(2)}),
    ),
    ok("key-proto", pd({"__proto__": 1, "$set": 2}), track_rows({"proto": I(1), "set": I(2)})),
    ok("key-empty-nested", pd({"a": {"": 1}}), track_rows({f"a_{h('')}": I(1)})),
    ok(
        "context-key-unicode",
        J(trk(context={"名前": "x", "ip": "1.2.3.4"})),
        track_rows({}, context_ip="1.2.3.4", **{f"context_{h('名前')}": "x"}),
    ),
    ok("key-300-chars-kept", pd({"a" * 300: 1}), track_rows({"a" * 300: I(1)})),
    ok("key-301-chars-cut", pd({"b" * 301: 1}), track_rows({"b" * 291 + "_" + h("b" * 301): I(1)})),
    ok(
        "key-digit-prefix-pushes-past-300",
        pd({"3" + "a" * 299: 1}),
        track_rows({"_3" + "a" * 289 + "_" + h("3" + "a" * 299): I(1)}),
    ),
    # naming docstring: nested = snake_case(parent + "_" + key); snake_case drops a leading "_"
    ok(
        "key-nested-under-hashed-parents",
        pd({"名前": {"a": 1}, "🔥": {"a": 2}}),
        track_rows({"_" + h("名前") + "_a": I(1), h("🔥") + "_a": I(2)}),
    ),
    ok(
        "key-displaced-then-natural-collision",
        pd({"id": "x", "properties_id": "y"}),
        track_rows({"properties_id": S("x")}, id="m-1"),
    ),
    ok(
        "prop-nested-context-object",
        J(trk(context={"ip": "1.2.3.4"}, properties={"context": {"ip": "6.6.6.6", "os": "x"}})),
        track_rows(
            {"properties_context_ip": S("6.6.6.6"), "properties_context_os": S("x")},
            context_ip="1.2.3.4",
            absent=("context_os",),
        ),
    ),
    # ---- SQL / backtick injection (names are snake_case: only [a-z0-9_] survive)
    ok(
        "event-backtick-drop-table",
        J(trk(event="a`; DROP TABLE x; --")),
        track_rows({}, "a_drop_table_x", event_text="a`; DROP TABLE x; --"),
    ),
    ok(
        "event-quote-or-1-1",
        J(trk(event="x' OR '1'='1")),
        track_rows({}, "x_or_1_1", event_text="x' OR '1'='1"),
    ),
    ok(
        "event-backquoted-path",
        J(trk(event="`project.dataset.table`")),
        track_rows({}, "project_dataset_table"),
    ),
    ok(
        "event-bobby-tables",
        J(trk(event="Robert'); DROP TABLE Students;--")),
        track_rows({}, "robert_drop_table_students"),
    ),
    ok(
        "key-backtick-drop-table",
        pd({"a`; DROP TABLE x; --": 1}),
        track_rows({"a_drop_table_x": I(1)}),
    ),
    ok("key-quote-or-1-1", pd({"x' OR '1'='1": 1}), track_rows({"x_or_1_1": I(1)})),
    ok(
        "key-backquoted-path",
        pd({"`project.dataset.table`": 1}),
        track_rows({"project_dataset_table": I(1)}),
    ),
    ok(
        "source-attribute-injection",
        J(trk()),
        track_rows({}),
        attributes={"source": "prod`; DROP SCHEMA x; --"},
        dataset="prod_drop_schema_x",
    ),
    ok(
        "source-attribute-2000-chars",
        J(trk()),
        {"tracks": 1, "order_completed": 1},
        attributes={"source": "Src " * 500},
        # the dataset is checked by _long_dataset_check: only its bound is documented
        check=_long_dataset_check,
    ),
    bad("source-attribute-punctuation", J(trk()), "invalid_source", attributes={"source": "!!!"}),
    # ---- event names that would make odd tables
    ok(
        "event-unicode-only",
        J(trk(event="名前")),
        track_rows({}, f"_{h('名前')}", event_text="名前"),
    ),
    ok(
        "event-punctuation-only",
        J(trk(event="!!!")),
        track_rows({}, f"_{h('!!!')}", event_text="!!!"),
    ),
    ok(
        "event-named-tracks",
        J(trk(event="Tracks")),
        track_rows({}, "tracks_event", event_text="Tracks"),
    ),
    ok("event-named-users", J(trk(event="users")), track_rows({}, "users_event")),
    ok("event-named-identifies", J(trk(event="Identifies")), track_rows({}, "identifies_event")),
    ok("event-ending-in-view", J(trk(event="Order View")), track_rows({}, "order_view_event")),
    # BigQuery's metadata views: a dataset or table of this name cannot be queried.
    ok(
        "event-named-information-schema",
        J(trk(event="INFORMATION_SCHEMA")),
        track_rows({}, "information_schema_event", event_text="INFORMATION_SCHEMA"),
    ),
    ok(
        "source-named-information-schema",
        J(trk()),
        track_rows({}),
        attributes={"source": "INFORMATION_SCHEMA"},
        dataset="information_schema_source",
    ),
    ok("event-leading-digits", J(trk(event="3D Secure")), track_rows({}, "3d_secure")),
    ok(
        "event-1500-chars",
        J(trk(event=LONG_EVENT)),
        {"tracks": 1},
        check=_long_event_check,
        unnamed=1,
    ),
    bad("event-empty", J(trk(event="")), "missing_event"),
    bad("event-blank", J(trk(event="   ")), "missing_event"),
    bad("event-number", J(trk(event=42)), "invalid_field"),
    bad("event-array", J(trk(event=["a"])), "invalid_field"),
    # ---- reserved names as property keys (README "Reserved columns", "Names")
    ok(
        "key-bigquery-pseudo-columns",
        pd(
            {
                "_PARTITIONTIME": 1,
                "_PARTITIONDATE": 2,
                "_TABLE_SUFFIX": 3,
                "_FILE_NAME": 4,
                "__root__": 5,
                "_CHANGE_TYPE": 6,
            }
        ),
        track_rows(
            {
                "partitiontime": I(1),
                "partitiondate": I(2),
                "table_suffix": I(3),
                "file_name": I(4),
                "root": I(5),
                "change_type": I(6),
            }
        ),
    ),
    ok("key-id-differs", pd({"id": "ord-9"}), track_rows({"properties_id": S("ord-9")}, id="m-1")),
    ok("key-id-equals-message-id", pd({"id": "m-1"}), track_rows({}, id="m-1")),
    ok(
        "key-loaded-at-uuid-ts",
        pd({"loaded_at": "x", "uuid_ts": "y", "received_at": "z"}),
        track_rows(
            {
                "properties_loaded_at": S("x"),
                "properties_uuid_ts": S("y"),
                "properties_received_at": S("z"),
            },
            loaded_at=LOADED,
            uuid_ts=LOADED,
            received_at=R,
        ),
    ),
    ok(
        "key-event-and-event-text",
        pd({"event": "e", "event_text": "t"}),
        track_rows(
            {"properties_event": S("e"), "properties_event_text": S("t")},
            event_text="Order Completed",
        ),
    ),
    ok(
        "key-context-ip-equal",
        J(trk(context={"ip": "1.2.3.4"}, properties={"context_ip": "1.2.3.4"})),
        track_rows({}, context_ip="1.2.3.4"),
    ),
    ok(
        "key-context-ip-differs",
        J(trk(context={"ip": "1.2.3.4"}, properties={"context_ip": "6.6.6.6"})),
        track_rows({"properties_context_ip": S("6.6.6.6")}, context_ip="1.2.3.4"),
    ),
    ok(
        "key-context-ip-without-context",
        pd({"context_ip": "6.6.6.6"}),
        track_rows({"properties_context_ip": S("6.6.6.6")}, absent=("context_ip",)),
    ),
    ok(
        "key-timestamp-string",
        pd({"timestamp": "2020-01-01T00:00:00Z"}),
        track_rows({"properties_timestamp": TS("2020-01-01T00:00:00.000000Z")}, timestamp=R),
    ),
    ok(
        "trait-id-on-identify",
        J(
            {
                "type": "identify",
                "messageId": "m-1",
                "userId": "u1",
                "traits": {"id": "t-1", "email": "a@b"},
            }
        ),
        {
            "identifies": tbl({"traits_id": S("t-1"), "email": S("a@b")}, id="m-1", user_id="u1"),
            "users": tbl({"traits_id": S("t-1"), "email": S("a@b")}, id="u1"),
        },
    ),
    ok(
        "page-name-category-in-properties",
        J(
            {
                "type": "page",
                "messageId": "m-1",
                "anonymousId": "a1",
                "name": "Home",
                "category": "Docs",
                "properties": {"name": "Home", "category": "Other"},
            }
        ),
        {
            "pages": tbl(
                {"properties_category": S("Other")}, name="Home", category="Docs", anonymous_id="a1"
            )
        },
    ),
    ok(
        "group-trait-group-id",
        J(
            {
                "type": "group",
                "messageId": "m-1",
                "userId": "u1",
                "groupId": "g1",
                "traits": {"group_id": "g2", "groupId": "g1"},
            }
        ),
        {"groups": tbl({"traits_group_id": S("g2")}, group_id="g1")},
    ),
    # ---- timestamps (ISO-8601 strings only; canonical UTC microseconds)
    bad("ts-epoch-seconds", J(trk(timestamp=1714564800)), "invalid_timestamp"),
    bad("ts-epoch-millis", J(trk(timestamp=1714564800000)), "invalid_timestamp"),
    bad("ts-epoch-seconds-string", J(trk(timestamp="1714564800")), "invalid_timestamp"),
    bad("ts-rfc2822", J(trk(timestamp="Wed, 01 May 2024 12:00:00 +0000")), "invalid_timestamp"),
    bad("ts-month-13-hour-99", J(trk(timestamp="2024-13-45T99:99:99Z")), "invalid_timestamp"),
    bad("ts-year-zero", J(trk(timestamp="0000-01-01T00:00:00Z")), "invalid_timestamp"),
    bad("ts-empty-string", J(trk(timestamp="")), "invalid_timestamp"),
    bad("sent-at-epoch", J(trk(sentAt=1714564800)), "invalid_timestamp"),
    bad("received-at-garbage", J(trk(receivedAt="now")), "invalid_timestamp"),
    bad(
        "ts-year-1-east-offset-leaves-range",
        J(trk(timestamp="0001-01-01T00:00:00+14:00")),
        "invalid_timestamp",
    ),
    bad(
        "ts-year-9999-west-offset-leaves-range",
        J(trk(timestamp="9999-12-31T23:59:59-12:00")),
        "invalid_timestamp",
    ),
    ok(
        "ts-max-instant",
        J(trk(timestamp="9999-12-31T23:59:59.999999Z")),
        track_rows(
            {},
            original_timestamp="9999-12-31T23:59:59.999999Z",
            timestamp="9999-12-31T23:59:59.999999Z",
        ),
    ),
    bad(
        "ts-far-future-skew-leaves-range",
        J(trk(timestamp="9999-12-31T23:59:59Z", sentAt="2024-05-01T11:00:00Z")),
        "invalid_timestamp",
        published=True,
    ),
    bad(
        "ts-year-1-skew-leaves-range",
        J(trk(timestamp="0001-01-01T00:00:00Z", sentAt="2024-05-01T13:00:00Z")),
        "invalid_timestamp",
        published=True,
    ),
    ok(
        # A file line has no receive time of its own: no skew correction, no range error.
        "ts-file-line-far-future-kept-as-sent",
        J(trk(timestamp="9999-12-31T23:59:59Z", sentAt="2024-05-01T11:00:00Z")),
        track_rows({}, timestamp="9999-12-31T23:59:59.000000Z", received_at=R),
    ),
    ok(
        "ts-pre-1970",
        J(trk(timestamp="1969-07-20T20:17:40Z")),
        track_rows(
            {},
            original_timestamp="1969-07-20T20:17:40.000000Z",
            timestamp="1969-07-20T20:17:40.000000Z",
        ),
    ),
    ok(
        "ts-offset-plus-14",
        J(trk(timestamp="2024-05-01T12:00:00+14:00")),
        track_rows({}, timestamp="2024-04-30T22:00:00.000000Z"),
    ),
    ok(
        "ts-offset-minus-12",
        J(trk(timestamp="2024-05-01T12:00:00-12:00")),
        track_rows({}, timestamp="2024-05-02T00:00:00.000000Z"),
    ),
    ok(
        "ts-lowercase-t",
        J(trk(timestamp="2024-05-01t11:00:00Z")),
        track_rows({}, timestamp="2024-05-01T11:00:00.000000Z"),
    ),
    # RFC 3339 section 5.6 (the ISO 8601 profile of the Internet): "t" and "z" may be lower case.
    ok(
        "ts-lowercase-t-and-z",
        J(trk(timestamp="2024-05-01t11:00:00z")),
        track_rows({}, timestamp="2024-05-01T11:00:00.000000Z"),
    ),
    ok(
        "ts-space-separator",
        J(trk(timestamp="2024-05-01 11:00:00Z")),
        track_rows({}, timestamp="2024-05-01T11:00:00.000000Z"),
    ),
    ok(
        "ts-iso-week-date",
        J(trk(timestamp="2024-W18-3T11:00:00Z")),
        track_rows({}, timestamp="2024-05-01T11:00:00.000000Z"),
    ),
    ok(
        "ts-nanoseconds-truncated",
        J(trk(timestamp="2024-05-01T11:00:00.123456789Z")),
        track_rows({}, timestamp="2024-05-01T11:00:00.123456Z"),
    ),
    ok(
        "ts-date-only",
        J(trk(timestamp="2024-05-01")),
        track_rows({}, timestamp="2024-05-01T00:00:00.000000Z"),
    ),
    ok(
        "ts-skew-corrected",
        J(trk(timestamp="2024-05-01T11:59:50Z", sentAt="2024-05-01T12:00:01Z")),
        track_rows(
            {},
            timestamp="2024-05-01T11:59:49.000000Z",
            sent_at="2024-05-01T12:00:01.000000Z",
            original_timestamp="2024-05-01T11:59:50.000000Z",
        ),
        published=True,
    ),
    ok(
        "ts-skew-corrected-against-payload-received-at",
        J(
            trk(
                timestamp="2024-05-01T11:59:50Z",
                sentAt="2024-05-01T12:00:01Z",
                receivedAt="2024-05-01T12:00:00Z",
            )
        ),
        track_rows(
            {},
            timestamp="2024-05-01T11:59:49.000000Z",
            original_timestamp="2024-05-01T11:59:50.000000Z",
        ),
    ),
    ok(
        # A month-old file read today: its events keep the time they happened.
        "ts-month-old-file-line-keeps-its-time",
        J(trk(timestamp="2024-04-01T09:00:00Z", sentAt="2024-04-01T09:00:02Z")),
        track_rows(
            {},
            timestamp="2024-04-01T09:00:00.000000Z",
            original_timestamp="2024-04-01T09:00:00.000000Z",
            received_at=R,
        ),
    ),
    ok(
        "ts-received-at-from-payload",
        J(trk(receivedAt="2024-05-01T14:00:00+01:00")),
        track_rows(
            {}, received_at="2024-05-01T13:00:00.000000Z", timestamp="2024-05-01T13:00:00.000000Z"
        ),
    ),
    ok(
        "prop-timestamps-odd-formats",
        pd(
            {
                "a": "2024-05-01T12:00:00+14:00",
                "b": "2024-13-45T99:99:99Z",
                "c": "0000-01-01T00:00:00Z",
                "d": "2024-05-01",
                "e": "2024-05-01t12:00:00Z",
                "f": "2024-05-01 12:00:00",
                "g": "Wed, 01 May 2024 12:00:00 +0000",
            }
        ),
        track_rows(
            {
                "a": TS("2024-04-30T22:00:00.000000Z"),
                "b": S("2024-13-45T99:99:99Z"),
                "c": S("0000-01-01T00:00:00Z"),
                "d": S("2024-05-01"),
                "e": TS("2024-05-01T12:00:00.000000Z"),
                "f": TS("2024-05-01T12:00:00.000000Z"),
                "g": S("Wed, 01 May 2024 12:00:00 +0000"),
            }
        ),
    ),
    # README: "a string with an ISO-8601 date and time -> TIMESTAMP"; a week date is one.
    # Property strings are typed TIMESTAMP only with a calendar date (README):
    # a week date stays text.
    ok(
        "prop-iso-week-date-time",
        pd({"w": "2024-W18-3T12:00:00Z"}),
        track_rows({"w": S("2024-W18-3T12:00:00Z")}),
    ),
    # ---- null everywhere
    ok(
        "null-user-id-with-anonymous-id",
        J(trk(userId=None, anonymousId="a1")),
        track_rows({}, absent=("user_id",), anonymous_id="a1"),
    ),
    ok(
        "empty-user-id-with-anonymous-id",
        J(trk(userId="", anonymousId="a1")),
        track_rows({}, absent=("user_id",), anonymous_id="a1"),
    ),
    bad("null-both-ids", J(trk(userId=None, anonymousId=None)), "missing_identity"),
    bad("blank-user-id-only", J(trk(userId="  ")), "missing_identity"),
    ok("null-properties", J(trk(properties=None)), track_rows({})),
    ok("null-context", J(trk(context=None)), track_rows({})),
    ok(
        "null-and-empty-values",
        pd({"a": None, "b": {}, "c": {"d": None, "e": {}}, "f": 1}),
        track_rows({"f": I(1)}),
    ),
    bad("null-event", J(trk(event=None)), "missing_event"),
    bad("null-type", J(trk(type=None)), "missing_type"),
    bad("no-type", J({k: v for k, v in trk().items() if k != "type"}), "missing_type"),
    ok(
        "null-message-id-generated",
        J(trk(messageId=None)),
        track_rows({}, id=is_uuid5),
        check=_generated_id_stable,
    ),
    ok(
        "null-timestamps",
        J(trk(timestamp=None, sentAt=None, originalTimestamp=None)),
        track_rows({}, absent=("sent_at", "original_timestamp"), timestamp=R, received_at=R),
    ),
    ok(
        "null-traits-identify",
        J({"type": "identify", "messageId": "m-1", "userId": "u1", "traits": None}),
        {"identifies": tbl({}, id="m-1"), "users": tbl({}, id="u1", received_at=R, uuid_ts=LOADED)},
    ),
    ok(
        "null-name-page",
        J({"type": "page", "messageId": "m-1", "anonymousId": "a1", "name": None}),
        {"pages": tbl({}, absent=("name", "category"))},
    ),
    bad(
        "null-group-id",
        J({"type": "group", "messageId": "m-1", "userId": "u1", "groupId": None}),
        "missing_group_id",
    ),
    bad(
        "null-previous-id",
        J({"type": "alias", "messageId": "m-1", "userId": "u1", "previousId": None}),
        "missing_previous_id",
    ),
    bad(
        "alias-null-user-id",
        J(
            {
                "type": "alias",
                "messageId": "m-1",
                "userId": None,
                "anonymousId": "a",
                "previousId": "p",
            }
        ),
        "missing_user_id",
    ),
    # ---- source routing, fields outside the spec, timestamp precedence
    ok(
        "source-field-from-event",
        J(trk(context={"source": "Production Site"})),
        track_rows({}, context_source="Production Site"),
        config=ModelConfig(sources=SourceConfig(source_field="context.source")),
        dataset="production_site",
    ),
    bad(
        "source-field-number",
        J(trk(context={"source": 5})),
        "invalid_source",
        config=ModelConfig(sources=SourceConfig(source_field="context.source")),
    ),
    bad(
        "source-field-blank",
        J(trk(context={"source": "  "})),
        "invalid_source",
        config=ModelConfig(sources=SourceConfig(source_field="context.source")),
    ),
    bad(
        "source-field-unicode-only",
        J(trk(context={"source": "名前"})),
        "invalid_source",
        config=ModelConfig(sources=SourceConfig(source_field="context.source")),
    ),
    ok(
        "top-level-extras-not-stored",
        J(
            trk(
                integrations={"All": True},
                writeKey="wk",
                _metadata={"x": 1},
                channel="server",
                version=2,
                extra={"a": 1},
            )
        ),
        track_rows({}),
    ),
    ok(
        "original-timestamp-wins-over-timestamp",
        J(trk(originalTimestamp="2024-05-01T10:00:00Z", timestamp="2024-05-01T11:00:00Z")),
        track_rows(
            {},
            original_timestamp="2024-05-01T10:00:00.000000Z",
            timestamp="2024-05-01T10:00:00.000000Z",
        ),
    ),
    ok(
        "page-traits-ignored",
        J(
            {
                "type": "page",
                "messageId": "m-1",
                "anonymousId": "a1",
                "traits": {"plan": "pro"},
                "properties": {"path": "/"},
            }
        ),
        {"pages": tbl({"path": S("/")})},
    ),
    # ---- field shapes, type and messageId
    bad("properties-array", J(trk(properties=[{"a": 1}])), "invalid_field"),
    bad("context-string", J(trk(context="ip=1.2.3.4")), "invalid_field"),
    bad(
        "traits-array",
        J({"type": "identify", "messageId": "m-1", "userId": "u1", "traits": [1]}),
        "invalid_field",
    ),
    bad(
        "page-name-number",
        J({"type": "page", "messageId": "m-1", "anonymousId": "a1", "name": 5}),
        "invalid_field",
    ),
    ok("type-upper-case", J(trk(type="TRACK")), track_rows({})),
    bad("type-trailing-space", J(trk(type="track ")), "unknown_type"),
    bad("type-number", J(trk(type=7)), "unknown_type"),
    bad("type-array", J(trk(type=["track"])), "unknown_type"),
    bad("message-id-empty", J(trk(messageId="")), "invalid_message_id"),
    bad("message-id-256-chars", J(trk(messageId="m" * 256)), "invalid_message_id"),
    ok("message-id-255-chars", J(trk(messageId="m" * 255)), track_rows({}, id="m" * 255)),
    bad("message-id-number", J(trk(messageId=123)), "invalid_message_id"),
    # ---- arrays (and objects in them) become compact JSON text
    ok(
        "array-of-objects",
        pd({"products": [{"sku": "w-1", "price": 1.5}, {"sku": "w-2", "tags": ["a", None]}]}),
        track_rows({"products": S('[{"sku":"w-1","price":1.5},{"sku":"w-2","tags":["a",null]}]')}),
    ),
    ok("array-empty", pd({"a": []}), track_rows({"a": S("[]")})),
    ok("array-of-nulls", pd({"a": [None, None]}), track_rows({"a": S("[null,null]")})),
    ok("array-nested-25", pd({"a": json.loads(nest_arr(25))}), track_rows({"a": S(nest_arr(25))})),
    # ---- duplicate keys: the last one wins (as in every mainstream JSON parser)
    ok(
        "duplicate-event-key",
        b'{"type":"track","messageId":"m-1","userId":"u1","event":"First","event":"Second"}',
        track_rows({}, "second", event_text="Second"),
    ),
    ok(
        "duplicate-type-key",
        b'{"type":"bogus","messageId":"m-1","userId":"u1","event":"E","type":"track"}',
        track_rows({}, "e"),
    ),
    ok("duplicate-property-key", raw_props('{"a":1,"a":"two"}'), track_rows({"a": S("two")})),
    ok(
        "duplicate-message-id",
        b'{"type":"track","messageId":"m-1","userId":"u1","event":"E","messageId":"m-2"}',
        track_rows({}, "e", id="m-2"),
    ),
    # ---- batches
    ok(
        "batch-1000-tiny-events",
        J(
            {
                "batch": [
                    {"type": "alias", "messageId": f"b{i}", "userId": "u", "previousId": "p"}
                    for i in range(1000)
                ]
            }
        ),
        {"aliases": 1000},
        events=1000,
        check=_batch_1000_check,
    ),
    bad("batch-empty", b'{"batch":[]}', "empty_batch"),
    bad("batch-string", b'{"batch":"[]"}', "empty_batch"),
    bad("batch-object", b'{"batch":{"0":{}}}', "empty_batch"),
    bad("batch-null", b'{"batch":null}', "empty_batch"),
    Case(
        "batch-items-not-objects",
        J(
            {
                "batch": [
                    1,
                    "x",
                    None,
                    [],
                    True,
                    {"type": "alias", "messageId": "b1", "userId": "u", "previousId": "p"},
                ]
            }
        ),
        ["not_an_object"] * 5,
        {"aliases": tbl({}, id="b1", previous_id="p")},
        events=6,
    ),
    ok(
        "batch-inherits-sent-at-and-context",
        J(
            {
                "sentAt": "2024-05-01T12:00:01Z",
                "context": {"ip": "1.1.1.1", "locale": "fr"},
                "batch": [
                    trk(messageId="b1", timestamp="2024-05-01T11:59:59Z", context={"ip": "2.2.2.2"})
                ],
            }
        ),
        track_rows(
            {},
            id="b1",
            context_ip="2.2.2.2",
            context_locale="fr",
            sent_at="2024-05-01T12:00:01.000000Z",
            timestamp="2024-05-01T11:59:58.000000Z",
        ),
        published=True,
    ),
    ok(
        "batch-key-with-type-is-one-event",
        J(trk(batch=[trk(messageId="b9")])),
        track_rows({}, id="m-1"),
    ),
    Case(
        "batch-invalid-sent-at-applies-to-every-item",
        J({"sentAt": 1714564800, "batch": [trk(messageId="b1"), trk(messageId="b2")]}),
        ["invalid_timestamp", "invalid_timestamp"],
        {},
        events=2,
    ),
    Case(
        "batch-item-context-string",
        J(
            {
                "context": {"ip": "1.1.1.1"},
                "batch": [trk(messageId="b1", context="x"), trk(messageId="b2")],
            }
        ),
        ["invalid_field"],
        track_rows({}, id="b2", context_ip="1.1.1.1"),
        events=2,
    ),
    bad("batch-with-nan-item", b'{"batch":[{"type":"track","x":NaN}]}', "invalid_json"),
    Case(
        "batch-in-batch",
        J({"batch": [{"batch": [trk(messageId="b2")]}, trk(messageId="b1")]}),
        ["missing_type"],
        track_rows({}, id="b1"),
        events=2,
    ),
    Case(
        "batch-item-1000-deep",
        b'{"batch":['
        + raw_props('{"a":' + nest_obj(1000) + "}")
        + b","
        + J(trk(messageId="b1"))
        + b"]}",
        ["too_deep"],
        track_rows({}, id="b1"),
        events=2,
    ),
    Case(
        "batch-item-over-32kib",
        J(
            {
                "batch": [
                    trk(messageId="b0", properties={"pad": "x" * 33 * KIB}),
                    trk(messageId="b1"),
                ]
            }
        ),
        ["payload_too_large"],
        track_rows({}, id="b1"),
        events=2,
    ),
    bad(
        "batch-over-500kib",
        J(
            {
                "batch": [
                    trk(messageId=f"b{i}", properties={"pad": "x" * 20 * KIB}) for i in range(30)
                ]
            }
        ),
        "payload_too_large",
    ),
]


def run_case(case: Case) -> list[Any]:
    return process_payload(
        RawMessage(case.payload, case.attributes, RECEIVED if case.published else None),
        RECEIVED,
        LOADED,
        case.config or ModelConfig(),
    )


def assert_table(rows: list[TableRow], table: str, spec: Tbl) -> None:
    (row,) = [r for r in rows if r.table == table]
    standard = USERS_STANDARD if table == "users" else STANDARD
    if spec.props is not None:
        extra = {c for c in row.row if c not in standard and not c.startswith("context_")}
        assert extra == set(spec.props), f"{table}: property columns {sorted(extra)[:20]}"
        for column, (column_type, value) in spec.props.items():
            assert row.schema[column] == column_type, f"{table}.{column}: {row.schema[column]}"
            assert row.row[column] == value, f"{table}.{column}: {row.row[column]!r}"
    for column, expected in spec.std.items():
        assert column in row.row, f"{table}: no column {column}"
        if callable(expected):
            assert expected(row.row[column]), f"{table}.{column}: {row.row[column]!r}"
        else:
            assert row.row[column] == expected, f"{table}.{column}: {row.row[column]!r}"
    for column in spec.absent:
        assert column not in row.row, f"{table}: unexpected column {column}"
    if table != "users":  # README: common columns
        assert row.row["uuid_ts"] == row.row["loaded_at"] == LOADED
        assert "received_at" in row.row and "timestamp" in row.row and "id" in row.row
    else:
        assert "anonymous_id" not in row.row


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_input(case: Case) -> None:
    rows, letters = check_output(run_case(case))
    assert sorted(d.reason for d in letters) == sorted(case.reasons)
    expected_counts = {t: (s if isinstance(s, int) else 1) for t, s in case.tables.items()}
    counts = Counter(r.table for r in rows)
    assert {t: counts[t] for t in expected_counts} == expected_counts
    assert sum(counts.values()) - sum(expected_counts.values()) == case.unnamed
    for table, spec in case.tables.items():
        if isinstance(spec, Tbl):
            assert_table(rows, table, spec)
    if case.check is not _long_dataset_check:
        for row in rows:
            assert row.dataset == case.dataset
    # one outcome per event: each loaded event has one primary row
    assert len(primary(rows)) + len(letters) == case.events
    if case.check is not None:
        case.check(rows, letters)


def test_case_ids_are_unique_and_many() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


def test_catalogue_count_invariant() -> None:
    """Rows-producing events + dead letters == input events, over the whole catalogue."""
    events = loaded = dead = 0
    for case in CASES:
        rows, letters = check_output(run_case(case))
        events += case.events
        loaded += len({(r.dataset, r.row["id"]) for r in primary(rows)})
        dead += len(letters)
    assert loaded + dead == events
