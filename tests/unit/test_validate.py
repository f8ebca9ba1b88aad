"""Golden tests for transforms.model.validate: payload parsing and the Segment spec rules.

Every expectation is derived by hand from the docstrings of transforms.model.validate
and transforms.model.deadletter (one stable reason per failed rule).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from transforms.model.deadletter import EventRejected, Reason
from transforms.model.validate import Limits, parse_payload, validate_event

OK = "ok"
KIB = 1024

# --------------------------------------------------------------------------- builders

BASE_EVENTS: dict[str, dict[str, Any]] = {
    "track": {"type": "track", "messageId": "m-1", "userId": "u1", "event": "Signed Up"},
    "identify": {
        "type": "identify",
        "messageId": "m-1",
        "userId": "u1",
        "traits": {"email": "a@example.com"},
    },
    "page": {"type": "page", "messageId": "m-1", "anonymousId": "a1", "name": "Home"},
    "screen": {"type": "screen", "messageId": "m-1", "anonymousId": "a1", "name": "Home"},
    "group": {"type": "group", "messageId": "m-1", "userId": "u1", "groupId": "g1"},
    "alias": {"type": "alias", "messageId": "m-1", "userId": "u1", "previousId": "a1"},
}


def event(call: str = "track", drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """A valid event of ``call``, with ``fields`` set and the keys in ``drop`` removed."""
    out = {**BASE_EVENTS[call], **fields}
    for key in drop:
        out.pop(key, None)
    return out


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (the same size orjson gives when it re-encodes)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def padded(size: int, **fields: Any) -> dict[str, Any]:
    """A valid track event whose compact JSON is exactly ``size`` bytes."""
    ev = event(**fields, properties={"pad": ""})
    ev["properties"]["pad"] = "x" * (size - len(dumps(ev)))
    assert len(dumps(ev)) == size
    return ev


def nest(levels: int) -> dict[str, Any]:
    """``levels`` objects nested inside each other."""
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        node = {"n": node}
    return node


def outcomes(raw: bytes, limits: Limits | None = None) -> list[str]:
    """For each event of a payload: "ok" or the reason it was rejected."""
    out: list[str] = []
    for parsed in parse_payload(raw, limits or Limits()):
        if parsed.rejection is not None:
            assert parsed.event is None
            out.append(parsed.rejection.reason)
            continue
        try:
            validate_event(parsed.event)
        except EventRejected as rejection:
            out.append(rejection.reason)
        else:
            out.append(OK)
    return out


def valid(ev: dict[str, Any]):
    return validate_event(ev)


# --------------------------------------------------------------------------- rejections

DEEP_ARRAY = b"[" * 1000 + b"]" * 1000
REJECTIONS = [
    # invalid_encoding
    pytest.param(b"\xff\xfe", [Reason.INVALID_ENCODING], id="invalid_encoding-bom-bytes"),
    pytest.param(
        b'{"type":"track","userId":"u\xc3","event":"E"}',
        [Reason.INVALID_ENCODING],
        id="invalid_encoding-truncated-utf8-in-object",
    ),
    # invalid_json
    pytest.param(b"{bad", [Reason.INVALID_JSON], id="invalid_json-garbage"),
    pytest.param(b"", [Reason.INVALID_JSON], id="invalid_json-empty-line"),
    pytest.param(
        b'{"type":"track","userId":"u1","event":"E","properties":{"x":NaN}}',
        [Reason.INVALID_JSON],
        id="invalid_json-NaN",
    ),
    pytest.param(
        b'{"type":"track","userId":"u1","event":"E","properties":{"x":1e400}}',
        [Reason.INVALID_JSON],
        id="invalid_json-1e400",
    ),
    pytest.param(
        b'{"type":"track","userId":"u1","event":"E","properties":{"x":"\\ud800"}}',
        [Reason.INVALID_JSON],
        id="invalid_json-lone-surrogate-escape",
    ),
    # not_an_object
    pytest.param(b"[1]", [Reason.NOT_AN_OBJECT], id="not_an_object-array"),
    pytest.param(b'"x"', [Reason.NOT_AN_OBJECT], id="not_an_object-string"),
    pytest.param(b"null", [Reason.NOT_AN_OBJECT], id="not_an_object-null"),
    # payload_too_large
    pytest.param(dumps(padded(32 * KIB + 1)), [Reason.PAYLOAD_TOO_LARGE], id="too_large-event"),
    pytest.param(
        dumps({"batch": [padded(20 * KIB, messageId=f"b-{i}") for i in range(26)]}),
        [Reason.PAYLOAD_TOO_LARGE],
        id="too_large-batch-over-500KiB",
    ),
    pytest.param(
        dumps({"batch": [event(messageId="b-1"), padded(33 * KIB, messageId="b-2")]}),
        [OK, Reason.PAYLOAD_TOO_LARGE],
        id="too_large-batch-item",
    ),
    # too_deep
    pytest.param(dumps(event(properties=nest(32))), [Reason.TOO_DEEP], id="too_deep-33-objects"),
    pytest.param(
        b'{"type":"track","messageId":"m-1","userId":"u1","event":"E","properties":{"a":'
        + DEEP_ARRAY
        + b"}}",
        [Reason.TOO_DEEP],
        id="too_deep-1000-deep-array-in-event",
    ),
    pytest.param(
        dumps({"batch": [event(messageId="b-1"), event(messageId="b-2", properties=nest(40))]}),
        [OK, Reason.TOO_DEEP],
        id="too_deep-batch-item",
    ),
    # empty_batch
    pytest.param(b'{"batch":[]}', [Reason.EMPTY_BATCH], id="empty_batch-empty-list"),
    pytest.param(b'{"batch":3}', [Reason.EMPTY_BATCH], id="empty_batch-not-a-list"),
    # missing_type / unknown_type
    pytest.param(dumps(event(drop=("type",))), [Reason.MISSING_TYPE], id="missing_type-absent"),
    pytest.param(dumps(event(type=None)), [Reason.MISSING_TYPE], id="missing_type-null"),
    pytest.param(dumps(event(type="purchase")), [Reason.UNKNOWN_TYPE], id="unknown_type-purchase"),
    pytest.param(dumps(event(type=5)), [Reason.UNKNOWN_TYPE], id="unknown_type-number"),
    # invalid_message_id
    pytest.param(dumps(event(messageId=123)), [Reason.INVALID_MESSAGE_ID], id="message_id-number"),
    pytest.param(dumps(event(messageId="")), [Reason.INVALID_MESSAGE_ID], id="message_id-empty"),
    pytest.param(
        dumps(event(messageId="m" * 256)), [Reason.INVALID_MESSAGE_ID], id="message_id-256-chars"
    ),
    # missing_identity
    pytest.param(
        dumps(event(drop=("userId",))), [Reason.MISSING_IDENTITY], id="missing_identity-none"
    ),
    pytest.param(
        dumps(event(userId=None, anonymousId=None)),
        [Reason.MISSING_IDENTITY],
        id="missing_identity-nulls",
    ),
    pytest.param(
        dumps(event(userId="", anonymousId="")),
        [Reason.MISSING_IDENTITY],
        id="missing_identity-empty-strings",
    ),
    pytest.param(
        dumps(event(userId="   ", anonymousId="\t")),
        [Reason.MISSING_IDENTITY],
        id="missing_identity-whitespace",
    ),
    # invalid_identity
    pytest.param(dumps(event(userId=True)), [Reason.INVALID_IDENTITY], id="invalid_identity-true"),
    pytest.param(dumps(event(userId=1.5)), [Reason.INVALID_IDENTITY], id="invalid_identity-float"),
    pytest.param(
        dumps(event(userId={"id": 1})), [Reason.INVALID_IDENTITY], id="invalid_identity-object"
    ),
    # missing_event
    pytest.param(dumps(event(drop=("event",))), [Reason.MISSING_EVENT], id="missing_event-absent"),
    pytest.param(dumps(event(event="")), [Reason.MISSING_EVENT], id="missing_event-empty"),
    pytest.param(dumps(event(event="  ")), [Reason.MISSING_EVENT], id="missing_event-blank"),
    # invalid_field
    pytest.param(dumps(event(event=5)), [Reason.INVALID_FIELD], id="invalid_field-event-number"),
    pytest.param(
        dumps(event(properties=[1, 2])), [Reason.INVALID_FIELD], id="invalid_field-properties-list"
    ),
    pytest.param(
        dumps(event("identify", traits="vip")),
        [Reason.INVALID_FIELD],
        id="invalid_field-traits-string",
    ),
    pytest.param(
        dumps(event(context=7)), [Reason.INVALID_FIELD], id="invalid_field-context-number"
    ),
    pytest.param(
        dumps(event("page", name=12)), [Reason.INVALID_FIELD], id="invalid_field-page-name-number"
    ),
    pytest.param(
        dumps(event("screen", category=["a"])),
        [Reason.INVALID_FIELD],
        id="invalid_field-screen-category-list",
    ),
    # missing_group_id / missing_previous_id / missing_user_id
    pytest.param(
        dumps(event("group", drop=("groupId",))), [Reason.MISSING_GROUP_ID], id="missing_group_id"
    ),
    pytest.param(
        dumps(event("group", groupId=" ")), [Reason.MISSING_GROUP_ID], id="missing_group_id-blank"
    ),
    pytest.param(
        dumps(event("alias", drop=("previousId",))),
        [Reason.MISSING_PREVIOUS_ID],
        id="missing_previous_id",
    ),
    pytest.param(
        dumps(event("alias", drop=("userId",), anonymousId="a2")),
        [Reason.MISSING_USER_ID],
        id="missing_user_id-alias-with-only-anonymousId",
    ),
    # invalid_timestamp
    pytest.param(
        dumps(event(timestamp=1700000000)), [Reason.INVALID_TIMESTAMP], id="timestamp-epoch-number"
    ),
    pytest.param(
        dumps(event(timestamp="yesterday")), [Reason.INVALID_TIMESTAMP], id="timestamp-free-text"
    ),
    pytest.param(
        dumps(event(sentAt="2024-13-01T00:00:00Z")),
        [Reason.INVALID_TIMESTAMP],
        id="sentAt-month-13",
    ),
    pytest.param(
        dumps(event(originalTimestamp="2024-05-01T24:00:00Z")),
        [Reason.INVALID_TIMESTAMP],
        id="originalTimestamp-hour-24",
    ),
    pytest.param(
        dumps(event(receivedAt="soon")), [Reason.INVALID_TIMESTAMP], id="receivedAt-free-text"
    ),
]


@pytest.mark.parametrize(("raw", "expected"), REJECTIONS)
def test_rejection_reason(raw: bytes, expected: list[str]) -> None:
    assert outcomes(raw) == expected


def test_every_validation_reason_is_covered() -> None:
    covered = {reason for param in REJECTIONS for reason in param.values[1] if reason != OK}
    # Raised by routing, the warehouse stages, or for bugs: tested with those stages.
    not_validate_reasons = {
        Reason.INTERNAL_ERROR,
        Reason.INVALID_SOURCE,
        Reason.COLUMN_LIMIT,
        Reason.SCHEMA_MISMATCH,
        Reason.WRITE_REJECTED,
        Reason.LOAD_REJECTED,
    }
    assert covered == set(Reason) - not_validate_reasons


def test_bare_1000_deep_array_is_rejected_without_crashing() -> None:
    result = parse_payload(DEEP_ARRAY, Limits())
    assert len(result) == 1
    assert result[0].event is None
    assert result[0].rejection.reason in {Reason.NOT_AN_OBJECT, Reason.TOO_DEEP}


# --------------------------------------------------------------------------- limits boundaries


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(dumps(padded(32 * KIB)), [OK], id="event-exactly-32KiB"),
        pytest.param(dumps(event(properties=nest(31))), [OK], id="32-nested-objects"),
        pytest.param(
            dumps(event(properties={"deep": nest(30), **{f"l{i}": [] for i in range(8)}})),
            [OK],
            id="32-levels-with-many-shallow-brackets",
        ),
        pytest.param(
            dumps({"batch": [padded(20 * KIB, messageId=f"b-{i}") for i in range(20)]}),
            [OK] * 20,
            id="batch-of-400KiB",
        ),
        pytest.param(dumps(event(messageId="m" * 255)), [OK], id="message_id-255-chars"),
    ],
)
def test_within_limits_passes(raw: bytes, expected: list[str]) -> None:
    assert outcomes(raw) == expected


def test_custom_depth_limit() -> None:
    raw = dumps(event(properties={"a": {"b": 1}}))  # 3 levels of objects
    assert outcomes(raw, Limits(max_depth=3)) == [OK]
    assert outcomes(raw, Limits(max_depth=2)) == [Reason.TOO_DEEP]


# --------------------------------------------------------------------------- valid events


@pytest.mark.parametrize(
    ("ev", "call", "user_id", "anonymous_id"),
    [
        pytest.param(event("track"), "track", "u1", None, id="track"),
        pytest.param(event("identify"), "identify", "u1", None, id="identify"),
        pytest.param(event("page"), "page", None, "a1", id="page"),
        pytest.param(event("screen"), "screen", None, "a1", id="screen"),
        pytest.param(event("group"), "group", "u1", None, id="group"),
        pytest.param(event("alias"), "alias", "u1", None, id="alias"),
        pytest.param(event(type="Track"), "track", "u1", None, id="type-Track-capitalised"),
        pytest.param(event("identify", type="IDENTIFY"), "identify", "u1", None, id="type-upper"),
        pytest.param(event(userId=123), "track", "123", None, id="integer-userId"),
        pytest.param(
            event(drop=("userId",), anonymousId=7), "track", None, "7", id="integer-anonymousId"
        ),
        pytest.param(
            event(userId="", anonymousId="a1"), "track", None, "a1", id="empty-userId-is-absent"
        ),
        pytest.param(event("page", drop=("name",)), "page", None, "a1", id="page-without-name"),
    ],
)
def test_valid_event(ev: dict[str, Any], call: str, user_id: Any, anonymous_id: Any) -> None:
    assert outcomes(dumps(ev)) == [OK]
    result = valid(ev)
    assert result.type == call
    assert result.message_id == "m-1"
    assert result.user_id == user_id
    assert result.anonymous_id == anonymous_id
    assert result.event == ev


def test_valid_event_timestamps() -> None:
    result = valid(
        event(
            originalTimestamp="2024-05-01T12:59:50+02:00",
            timestamp="2024-05-01T09:00:00Z",
            sentAt="2024-05-01 11:00:00Z",
            receivedAt="2024-05-01T12:00:00",
        )
    )
    assert result.original_timestamp == datetime(2024, 5, 1, 10, 59, 50, tzinfo=UTC)
    assert result.sent_at == datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)
    assert result.received_at == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_timestamp_used_when_no_original_timestamp() -> None:
    result = valid(event(timestamp="2024-05-01T10:59:50Z"))
    assert result.original_timestamp == datetime(2024, 5, 1, 10, 59, 50, tzinfo=UTC)
    assert result.sent_at is None
    assert result.received_at is None


# --------------------------------------------------------------------------- generated ids


def test_missing_message_id_gets_deterministic_uuid() -> None:
    first = valid(event(drop=("messageId",))).message_id
    again = valid(event(drop=("messageId",))).message_id
    other = valid(event(drop=("messageId",), event="Logged In")).message_id
    assert first == again
    assert first != other
    assert uuid.UUID(first).version == 5
    assert uuid.UUID(other).version == 5


def test_generated_id_ignores_key_order() -> None:
    forward = {"type": "track", "userId": "u1", "event": "E", "properties": {"a": 1, "b": 2}}
    backward = {"properties": {"b": 2, "a": 1}, "event": "E", "userId": "u1", "type": "track"}
    assert valid(forward).message_id == valid(backward).message_id


# --------------------------------------------------------------------------- batch envelopes


def test_batch_items_inherit_envelope() -> None:
    envelope = {
        "sentAt": "2024-05-01T11:00:00Z",
        "writeKey": "wk-1",
        "integrations": {"All": True},
        "context": {"library": {"name": "analytics-python"}, "ip": "1.1.1.1"},
        "batch": [
            {
                "type": "track",
                "messageId": "b-1",
                "userId": "u1",
                "event": "A",
                "context": {"ip": "2.2.2.2", "locale": "fr-FR"},
            },
            {"type": "identify", "messageId": "b-2", "userId": "u1"},
        ],
    }
    parsed = parse_payload(dumps(envelope), Limits())
    assert [p.rejection for p in parsed] == [None, None]
    assert parsed[0].event == {
        "sentAt": "2024-05-01T11:00:00Z",
        "writeKey": "wk-1",
        "integrations": {"All": True},
        "type": "track",
        "messageId": "b-1",
        "userId": "u1",
        "event": "A",
        "context": {"library": {"name": "analytics-python"}, "ip": "2.2.2.2", "locale": "fr-FR"},
    }
    assert parsed[1].event == {
        "sentAt": "2024-05-01T11:00:00Z",
        "writeKey": "wk-1",
        "integrations": {"All": True},
        "type": "identify",
        "messageId": "b-2",
        "userId": "u1",
        "context": {"library": {"name": "analytics-python"}, "ip": "1.1.1.1"},
    }
    assert validate_event(parsed[0].event).sent_at == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert validate_event(parsed[1].event).sent_at == datetime(2024, 5, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param(
            [
                event(messageId="b-1"),
                event(messageId="b-2", drop=("event",)),
                event("page", messageId="b-3"),
            ],
            [OK, Reason.MISSING_EVENT, OK],
            id="missing-event-in-the-middle",
        ),
        pytest.param(
            [event(messageId="b-1"), 5, event("alias", messageId="b-3")],
            [OK, Reason.NOT_AN_OBJECT, OK],
            id="number-item",
        ),
        pytest.param(
            [event("identify", messageId="b-1"), event("group", messageId="b-2", type="buy")],
            [OK, Reason.UNKNOWN_TYPE],
            id="unknown-type-last",
        ),
        pytest.param(
            [event(messageId="b-1", timestamp="yesterday"), event("screen", messageId="b-2")],
            [Reason.INVALID_TIMESTAMP, OK],
            id="bad-timestamp-first",
        ),
    ],
)
def test_one_bad_batch_item(items: list[Any], expected: list[str]) -> None:
    assert outcomes(dumps({"sentAt": "2024-05-01T11:00:00Z", "batch": items})) == expected
