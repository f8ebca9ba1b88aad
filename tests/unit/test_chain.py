"""The whole pure chain (transforms.model.chain.process_payload): the count invariant,
dead-letter contents and source routing.

The design's data flow: every input message ends as rows in its tables or as
exactly one dead letter. Count it. Expectations are derived by hand from the
docstrings of transforms.model.chain, transforms.model.route, transforms.model.validate and
transforms.model.deadletter.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest

from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter, Reason
from transforms.model.normalize import TableRow
from transforms.model.route import SourceConfig

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
R = "2024-05-01T12:00:00.000000Z"
LOADED = "2024-05-01T12:00:05.000000Z"
KIB = 1024
# Tables holding a second row for an event already counted elsewhere.
SECONDARY_TABLES = {"tracks", "users"}

# --------------------------------------------------------------------------- builders


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def track(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": mid, "userId": "u1", "event": "Order Completed", **fields}


def identify(mid: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": mid,
        "userId": "u1",
        "traits": {"plan": "pro"},
        **fields,
    }


def page(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "page", "messageId": mid, "anonymousId": "a1", "name": "Home", **fields}


def screen(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "screen", "messageId": mid, "anonymousId": "a1", "name": "Feed", **fields}


def group(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "group", "messageId": mid, "userId": "u1", "groupId": "g1", **fields}


def alias(mid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "alias", "messageId": mid, "userId": "u1", "previousId": "a1", **fields}


def without(ev: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in keys}


def padded(mid: str, size: int) -> dict[str, Any]:
    """A valid track event whose compact JSON is exactly ``size`` bytes."""
    ev = track(mid, properties={"pad": ""})
    ev["properties"]["pad"] = "x" * (size - len(dumps(ev)))
    return ev


def nest(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        node = {"n": node}
    return node


def run(
    payload: bytes,
    attributes: Mapping[str, str] | None = None,
    config: ModelConfig | None = None,
    publish_time: datetime | None = None,
) -> list[TableRow | DeadLetter]:
    return process_payload(
        RawMessage(payload, attributes, publish_time), RECEIVED, LOADED, config or ModelConfig()
    )


class Tally(NamedTuple):
    event_ids: set[str]  # distinct ids of rows in each event's own table
    primary_rows: int  # rows outside tracks/users
    dead_letters: list[DeadLetter]


def tally(out: list[TableRow | DeadLetter]) -> Tally:
    assert all(isinstance(item, (TableRow, DeadLetter)) for item in out)
    primary = [r for r in out if isinstance(r, TableRow) and r.table not in SECONDARY_TABLES]
    return Tally(
        {r.row["id"] for r in primary},
        len(primary),
        [d for d in out if isinstance(d, DeadLetter)],
    )


# --------------------------------------------------------------------------- the corpus


class Line(NamedTuple):
    label: str
    payload: bytes
    events: int  # input events: batch items count one each; a line rejected whole counts one
    loaded: int  # events expected to become rows
    reasons: list[str]  # expected dead-letter reasons
    attributes: Mapping[str, str] | None = None


CORPUS: list[Line] = [
    # good single events, every call type
    Line("track", dumps(track("c-01", properties={"revenue": 9.5})), 1, 1, []),
    Line(
        "track-no-message-id", dumps(without(track("x", event="Logged In"), "messageId")), 1, 1, []
    ),
    Line("track-capital-type", dumps(track("c-03", type="Track")), 1, 1, []),
    Line("identify", dumps(identify("c-04")), 1, 1, []),
    Line(
        "identify-anonymous", dumps(without(identify("c-05", anonymousId="a9"), "userId")), 1, 1, []
    ),
    Line("page", dumps(page("c-06", properties={"path": "/"})), 1, 1, []),
    Line("screen", dumps(screen("c-07")), 1, 1, []),
    Line("group", dumps(group("c-08", traits={"name": "Acme"})), 1, 1, []),
    Line("alias", dumps(alias("c-09")), 1, 1, []),
    Line("track-int-user", dumps(track("c-10", userId=42)), 1, 1, []),
    Line(
        "track-skew",
        dumps(track("c-11", sentAt="2024-05-01T11:00:00Z", timestamp="2024-05-01T10:59:50Z")),
        1,
        1,
        [],
    ),
    Line("page-context", dumps(page("c-12", context={"ip": "1.2.3.4"})), 1, 1, []),
    # batch envelopes
    Line(
        "batch-all-good",
        dumps(
            {
                "sentAt": "2024-05-01T11:00:00Z",
                "batch": [track("b1-1"), identify("b1-2"), page("b1-3")],
            }
        ),
        3,
        3,
        [],
    ),
    Line(
        "batch-missing-event",
        dumps({"batch": [track("b2-1"), without(track("b2-2"), "event"), screen("b2-3")]}),
        3,
        2,
        [Reason.MISSING_EVENT],
    ),
    Line(
        "batch-number-item",
        dumps({"batch": [group("b3-1"), 5, alias("b3-3")]}),
        3,
        2,
        [Reason.NOT_AN_OBJECT],
    ),
    Line(
        "batch-large-item",
        dumps({"batch": [track("b4-1"), padded("b4-2", 33 * KIB)]}),
        2,
        1,
        [Reason.PAYLOAD_TOO_LARGE],
    ),
    Line(
        "batch-deep-item",
        dumps({"batch": [track("b5-1"), track("b5-2", properties=nest(40))]}),
        2,
        1,
        [Reason.TOO_DEEP],
    ),
    Line(
        "batch-all-bad",
        dumps({"batch": [track("b6-1", type="buy"), track("b6-2", userId=True)]}),
        2,
        0,
        [Reason.UNKNOWN_TYPE, Reason.INVALID_IDENTITY],
    ),
    # lines rejected whole
    Line("invalid-encoding", b"\xff\xfe", 1, 0, [Reason.INVALID_ENCODING]),
    Line("invalid-json", b"{bad", 1, 0, [Reason.INVALID_JSON]),
    Line("empty-line", b"", 1, 0, [Reason.INVALID_JSON]),
    Line(
        "nan",
        b'{"type":"track","messageId":"c-nan","userId":"u1","event":"E","properties":{"x":NaN}}',
        1,
        0,
        [Reason.INVALID_JSON],
    ),
    Line("array", b"[1]", 1, 0, [Reason.NOT_AN_OBJECT]),
    Line("string", b'"x"', 1, 0, [Reason.NOT_AN_OBJECT]),
    Line("event-too-large", dumps(padded("c-big", 32 * KIB + 1)), 1, 0, [Reason.PAYLOAD_TOO_LARGE]),
    Line(
        "batch-too-large",
        dumps({"batch": [padded(f"c-bb-{i}", 20 * KIB) for i in range(26)]}),
        1,
        0,
        [Reason.PAYLOAD_TOO_LARGE],
    ),
    Line("event-too-deep", dumps(track("c-deep", properties=nest(32))), 1, 0, [Reason.TOO_DEEP]),
    Line("empty-batch", b'{"batch":[]}', 1, 0, [Reason.EMPTY_BATCH]),
    Line("batch-not-array", b'{"batch":3}', 1, 0, [Reason.EMPTY_BATCH]),
    # events that fail a spec rule
    Line("missing-type", dumps(without(track("c-t1"), "type")), 1, 0, [Reason.MISSING_TYPE]),
    Line("unknown-type", dumps(track("c-t2", type="purchase")), 1, 0, [Reason.UNKNOWN_TYPE]),
    Line("bad-message-id", dumps(track(123)), 1, 0, [Reason.INVALID_MESSAGE_ID]),
    Line("no-identity", dumps(without(track("c-t4"), "userId")), 1, 0, [Reason.MISSING_IDENTITY]),
    Line("bad-identity", dumps(track("c-t5", userId=1.5)), 1, 0, [Reason.INVALID_IDENTITY]),
    Line("no-event", dumps(track("c-t6", event=" ")), 1, 0, [Reason.MISSING_EVENT]),
    Line("bad-properties", dumps(track("c-t7", properties=[1])), 1, 0, [Reason.INVALID_FIELD]),
    Line("no-group-id", dumps(without(group("c-t8"), "groupId")), 1, 0, [Reason.MISSING_GROUP_ID]),
    Line(
        "no-previous-id",
        dumps(without(alias("c-t9"), "previousId")),
        1,
        0,
        [Reason.MISSING_PREVIOUS_ID],
    ),
    Line(
        "alias-anonymous-only",
        dumps(without(alias("c-t10", anonymousId="a1"), "userId")),
        1,
        0,
        [Reason.MISSING_USER_ID],
    ),
    Line(
        "bad-timestamp",
        dumps(track("c-t11", timestamp="yesterday")),
        1,
        0,
        [Reason.INVALID_TIMESTAMP],
    ),
    Line(
        "unusable-source",
        dumps(track("c-t12")),
        1,
        0,
        [Reason.INVALID_SOURCE],
        {"source": "!!!"},
    ),
    Line(
        "skew-out-of-range",
        # Skew is corrected against a real receive time only: here the event's own.
        dumps(
            track(
                "c-t13",
                sentAt="9999-12-31T00:00:00Z",
                timestamp="0001-01-02T00:00:00Z",
                receivedAt="2024-05-01T11:00:00Z",
            )
        ),
        1,
        0,
        [Reason.INVALID_TIMESTAMP],
    ),
]


@pytest.mark.parametrize("line", [pytest.param(line, id=line.label) for line in CORPUS])
def test_each_line_ends_as_rows_or_dead_letters(line: Line) -> None:
    got = tally(run(line.payload, line.attributes))
    assert len(got.event_ids) + len(got.dead_letters) == line.events
    assert got.primary_rows == len(got.event_ids) == line.loaded
    assert sorted(d.reason for d in got.dead_letters) == sorted(line.reasons)


def test_corpus_count_invariant() -> None:
    assert len(CORPUS) >= 40
    out: list[TableRow | DeadLetter] = []
    for line in CORPUS:
        out.extend(run(line.payload, line.attributes))
    got = tally(out)

    total_events = 12 + (3 + 3 + 3 + 2 + 2 + 2) + 11 + 13  # counted by hand from CORPUS
    assert total_events == sum(line.events for line in CORPUS) == 51
    assert len(got.event_ids) + len(got.dead_letters) == total_events
    assert len(got.event_ids) == 12 + 3 + 2 + 2 + 1 + 1 == 21
    assert got.primary_rows == 21  # no event yields two rows in its own tables
    assert Counter(d.reason for d in got.dead_letters) == Counter(
        reason for line in CORPUS for reason in line.reasons
    )


# --------------------------------------------------------------------------- dead letters


def dead_letter(out: list[TableRow | DeadLetter]) -> DeadLetter:
    assert len(out) == 1 and isinstance(out[0], DeadLetter), out
    return out[0]


def test_validate_dead_letter_keeps_payload_source_time_and_id() -> None:
    raw = b'{"type": "track",  "messageId": "m-77", "userId": "u1", "event": "  "}'
    letter = dead_letter(run(raw, {"source": "Production Site"}))
    assert letter.stage == "validate"
    assert letter.reason == Reason.MISSING_EVENT
    assert isinstance(letter.error, str) and letter.error
    assert letter.payload == raw.decode()
    assert letter.payload_truncated is False
    assert letter.source == "Production Site"
    assert letter.received_at == R
    assert letter.message_id == "m-77"


def test_dead_letter_of_unparseable_payload() -> None:
    raw = b'{"messageId": "m-78", "type": "track",'
    letter = dead_letter(run(raw))
    assert letter.stage == "validate"
    assert letter.reason == Reason.INVALID_JSON
    assert letter.payload == raw.decode()
    assert letter.payload_truncated is False
    assert letter.received_at == R
    assert letter.message_id is None  # not known: the payload does not parse


def test_dead_letter_of_unparseable_payload_keeps_attribute_source() -> None:
    # The attribute alone decides the source (route.py precedence 1), so it is known.
    letter = dead_letter(run(b"{bad", {"source": "Shop"}))
    assert letter.reason == Reason.INVALID_JSON
    assert letter.source == "Shop"


def test_dead_letter_without_usable_message_id() -> None:
    letter = dead_letter(run(dumps(track(5))))
    assert letter.reason == Reason.INVALID_MESSAGE_ID
    assert letter.message_id is None


def test_dead_letter_uses_publish_time() -> None:
    publish = datetime(2024, 5, 1, 9, 30, 0, 250000, tzinfo=UTC)
    letter = dead_letter(run(dumps(track("m-79", event="")), publish_time=publish))
    assert letter.received_at == "2024-05-01T09:30:00.250000Z"
    assert letter.source == "opentrack"


def test_rows_use_publish_time_as_received_at() -> None:
    publish = datetime(2024, 5, 1, 9, 30, 0, tzinfo=UTC)
    out = run(dumps(track("m-80")), publish_time=publish)
    assert [r.table for r in out] == ["order_completed", "tracks"]
    for table_row in out:
        assert table_row.row["received_at"] == "2024-05-01T09:30:00.000000Z"
        assert table_row.row["timestamp"] == "2024-05-01T09:30:00.000000Z"
        assert table_row.row["uuid_ts"] == LOADED


def test_batch_item_dead_letter() -> None:
    bad = without(track("b-bad", context={"ip": "2.2.2.2"}), "event")
    raw = dumps({"sentAt": "2024-05-01T11:00:00Z", "batch": [track("b-good"), bad]})
    out = run(raw, {"source": "Production Site"})
    got = tally(out)
    assert got.event_ids == {"b-good"}
    [letter] = got.dead_letters
    assert letter.stage == "validate"
    assert letter.reason == Reason.MISSING_EVENT
    assert letter.source == "Production Site"
    assert letter.received_at == R
    assert letter.message_id == "b-bad"
    kept = json.loads(letter.payload)
    assert {k: kept.get(k) for k in bad} == bad  # the item itself is replayable


def test_normalize_stage_dead_letter() -> None:
    raw = dumps(track("m-81", sentAt="9999-12-31T00:00:00Z", timestamp="0001-01-02T00:00:00Z"))
    letter = dead_letter(run(raw, {"source": "Production Site"}, publish_time=RECEIVED))
    assert letter.stage == "normalize"
    assert letter.reason == Reason.INVALID_TIMESTAMP
    assert letter.source == "Production Site"
    assert letter.received_at == R
    assert letter.message_id == "m-81"
    assert json.loads(letter.payload) == json.loads(raw)


def test_normalize_stage_dead_letter_keeps_original_text() -> None:
    # Spaced JSON: the original text differs from any re-encoding of the event.
    raw = json.dumps(
        track("m-82", sentAt="9999-12-31T00:00:00Z", timestamp="0001-01-02T00:00:00Z"), indent=1
    ).encode()
    letter = dead_letter(run(raw, publish_time=RECEIVED))
    assert letter.stage == "normalize"
    assert letter.payload == raw.decode()


# --------------------------------------------------------------------------- source routing

ROUTED = SourceConfig(
    default_source="Fallback Source", source_attribute="source", source_field="context.source"
)


@pytest.mark.parametrize(
    ("config", "attributes", "context", "dataset"),
    [
        pytest.param(
            ROUTED,
            {"source": "Production Site"},
            {"source": "Mobile App"},
            "production_site",
            id="attribute-wins-over-field",
        ),
        pytest.param(
            ROUTED, None, {"source": "Mobile App"}, "mobile_app", id="field-wins-over-default"
        ),
        pytest.param(
            ROUTED,
            {"other": "X"},
            {"source": "Mobile App"},
            "mobile_app",
            id="other-attribute-ignored",
        ),
        pytest.param(ROUTED, None, None, "fallback_source", id="default-without-context"),
        pytest.param(ROUTED, {}, {"ip": "1.2.3.4"}, "fallback_source", id="default-without-field"),
        pytest.param(
            SourceConfig(
                default_source="Fallback Source",
                source_attribute=None,
                source_field="context.source",
            ),
            {"source": "Production Site"},
            {"source": "Mobile App"},
            "mobile_app",
            id="attribute-not-configured",
        ),
        pytest.param(
            SourceConfig(), None, {"source": "Mobile App"}, "opentrack", id="field-not-configured"
        ),
        pytest.param(
            SourceConfig(), {"source": "Web Shop"}, None, "web_shop", id="default-attribute"
        ),
    ],
)
def test_source_routing(
    config: SourceConfig,
    attributes: Mapping[str, str] | None,
    context: dict[str, Any] | None,
    dataset: str,
) -> None:
    fields = {"context": context} if context is not None else {}
    out = run(dumps(track("m-90", **fields)), attributes, ModelConfig(sources=config))
    assert [type(item) for item in out] == [TableRow, TableRow]
    assert {r.dataset for r in out} == {dataset}


@pytest.mark.parametrize(
    ("config", "attributes", "context"),
    [
        pytest.param(SourceConfig(), {"source": "!!!"}, None, id="attribute-punctuation-only"),
        pytest.param(SourceConfig(), {"source": "名前"}, None, id="attribute-non-ascii-only"),
        pytest.param(ROUTED, None, {"source": "---"}, id="field-punctuation-only"),
        pytest.param(ROUTED, None, {"source": ""}, id="field-empty"),
        pytest.param(ROUTED, None, {"source": 5}, id="field-not-a-string"),
        pytest.param(SourceConfig(default_source="???"), None, None, id="default-unusable"),
    ],
)
def test_unusable_source_is_dead_lettered(
    config: SourceConfig, attributes: Mapping[str, str] | None, context: dict[str, Any] | None
) -> None:
    fields = {"context": context} if context is not None else {}
    raw = dumps(track("m-91", **fields))
    letter = dead_letter(run(raw, attributes, ModelConfig(sources=config)))
    assert letter.reason == Reason.INVALID_SOURCE
    assert letter.stage == "validate"
    assert letter.payload == raw.decode()
    assert letter.message_id == "m-91"
