"""Parse raw payloads and validate Segment events (pure functions + a thin DoFn).

A payload is one line of a file or one Pub/Sub message: a single event, or a
Segment batch envelope ``{"batch": [...], "sentAt": ..., "context": ...}``
whose items inherit the envelope's ``sentAt``, ``context`` (merged, the
item's keys win), ``integrations`` and ``writeKey``. Each event is then checked
against the Segment spec; the first failed rule rejects it with a stable
reason (``transforms.model.deadletter.Reason``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from transforms.model.deadletter import EventRejected, Reason
from transforms.model.records import builder
from transforms.model.timestamps import TimestampError, parse_timestamp

CALL_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_MESSAGE_ID_LENGTH = 255
# Namespace of the ids generated for events that arrive without a messageId.
GENERATED_ID_NAMESPACE = uuid.UUID("5d4c1f0e-8a0b-5c7e-9d1e-0f7a2b3c4d5e")
_ENVELOPE_DEFAULTS = ("sentAt", "integrations", "writeKey")
_OBJECT_FIELDS = ("properties", "traits", "context")
_ALL_BUT_OPENERS = bytes(byte for byte in range(256) if byte not in b"{[")


@dataclass(frozen=True)
class Limits:
    """Size and shape limits. Defaults follow Segment's tracking API."""

    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_depth: int = 32


class Parsed(NamedTuple):
    """One event split out of a payload, or the reason it could not be."""

    event: dict[str, Any] | None
    rejection: EventRejected | None
    payload: bytes | dict[str, Any]  # what its dead letter would keep


class ValidEvent(NamedTuple):
    event: dict[str, Any]
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime | None  # only when the payload carries receivedAt


_parsed = builder(Parsed)
_valid_event = builder(ValidEvent)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True if containers nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise EventRejected(
                Reason.INVALID_ENCODING, f"payload is not valid UTF-8 at byte {bad.start}"
            ) from exc
        if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
            # The parser's own nesting limit (1,024) is far past ours: same failure.
            raise EventRejected(Reason.TOO_DEEP, f"payload nests too deep to parse: {exc}") from exc
        raise EventRejected(Reason.INVALID_JSON, f"payload is not valid JSON: {exc}") from exc


def _expand_batch(envelope: dict[str, Any], raw: bytes, limits: Limits) -> list[Parsed]:
    """Items of a batch envelope. An item that cannot be re-encoded on its own
    (not an object, or too deep) keeps the whole raw batch as its payload."""
    items = envelope["batch"]
    if type(items) is not list or not items:
        raise EventRejected(Reason.EMPTY_BATCH, "batch envelope holds no events")
    defaults = {key: envelope[key] for key in _ENVELOPE_DEFAULTS if key in envelope}
    shared_context = envelope.get("context")
    parsed: list[Parsed] = []
    for item in items:
        if type(item) is not dict:
            rejection = EventRejected(Reason.NOT_AN_OBJECT, "batch item is not a JSON object")
            parsed.append(Parsed(None, rejection, raw))
            continue
        event = {**defaults, **item}
        if type(shared_context) is dict and type(item.get("context", {})) is dict:
            event["context"] = {**shared_context, **item.get("context", {})}
        if _depth_exceeds(event, limits.max_depth):
            rejection = EventRejected(
                Reason.TOO_DEEP, f"batch item nests deeper than {limits.max_depth} levels"
            )
            parsed.append(Parsed(None, rejection, raw))
            continue
        size = len(orjson.dumps(event))
        if size > limits.max_event_bytes:
            rejection = EventRejected(
                Reason.PAYLOAD_TOO_LARGE,
                f"batch item is {size} bytes, over the {limits.max_event_bytes}-byte limit",
            )
            parsed.append(Parsed(None, rejection, event))
        else:
            parsed.append(Parsed(event, None, event))
    return parsed


def parse_payload(raw: bytes, limits: Limits) -> list[Parsed]:
    """Split one raw payload into events; never raises for bad input."""
    try:
        size = len(raw)
        if size > limits.max_event_bytes and size > limits.max_batch_bytes:
            raise EventRejected(
                Reason.PAYLOAD_TOO_LARGE,
                f"payload is {size} bytes, over the {limits.max_batch_bytes}-byte limit",
            )
        document = _parse_json(raw)
        if type(document) is not dict:
            raise EventRejected(
                Reason.NOT_AN_OBJECT, f"payload is a JSON {type(document).__name__}, not an object"
            )
        if "batch" in document and "type" not in document:
            if size > limits.max_batch_bytes:
                raise EventRejected(
                    Reason.PAYLOAD_TOO_LARGE,
                    f"batch is {size} bytes, over the {limits.max_batch_bytes}-byte limit",
                )
            return _expand_batch(document, raw, limits)
        if size > limits.max_event_bytes:
            raise EventRejected(
                Reason.PAYLOAD_TOO_LARGE,
                f"event is {size} bytes, over the {limits.max_event_bytes}-byte limit",
            )
        # The number of opening brackets bounds the depth: ordinary events skip the
        # walk. Deleting every other byte counts both kinds in one pass.
        if len(raw.translate(None, _ALL_BUT_OPENERS)) > limits.max_depth and _depth_exceeds(
            document, limits.max_depth
        ):
            raise EventRejected(
                Reason.TOO_DEEP, f"event nests deeper than {limits.max_depth} levels"
            )
        return [_parsed((document, None, raw))]
    except EventRejected as rejection:
        return [Parsed(None, rejection, raw)]


def generated_message_id(event: dict[str, Any]) -> str:
    """Deterministic id for an event without ``messageId``: a UUIDv5 of its
    canonical JSON (sorted keys), so a replay of the same payload gets the same
    id and is deduplicated."""
    canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return str(uuid.uuid5(GENERATED_ID_NAMESPACE, canonical.decode()))


def _identity(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        return value if value.strip() else None
    if kind is int:
        return str(value)
    if kind is float and value.is_integer():
        raise EventRejected(
            Reason.INVALID_IDENTITY,
            f"{key} is an integer beyond 64 bits: its digits cannot be kept exactly; "
            "send it as text",
        )
    raise EventRejected(Reason.INVALID_IDENTITY, f"{key} must be a string or an integer")


def _timestamp(key: str, value: Any) -> datetime:
    try:
        return parse_timestamp(value)
    except TimestampError as exc:
        raise EventRejected(Reason.INVALID_TIMESTAMP, f"{key}: {exc}") from exc


def _required_text(event: dict[str, Any], key: str, reason: Reason) -> None:
    value = event.get(key)
    if value is None or (type(value) is str and not value.strip()):
        raise EventRejected(reason, f"{event['type']} call without {key}")
    if type(value) is not str and type(value) is not int:
        raise EventRejected(Reason.INVALID_FIELD, f"{key} must be a string")


def validate_event(event: dict[str, Any]) -> ValidEvent:
    """Check one event against the Segment spec; raise ``EventRejected`` if it fails."""
    get = event.get  # absent keys are the common case: no call for them
    call = get("type")
    if type(call) is not str or call not in CALL_TYPES:  # exact spelling: no lower()
        if call is None:
            raise EventRejected(Reason.MISSING_TYPE, "event has no type")
        if type(call) is not str or call.lower() not in CALL_TYPES:
            raise EventRejected(
                Reason.UNKNOWN_TYPE, f"type {str(call)[:40]!r} is not a Segment call"
            )
        call = call.lower()

    message_id = event.get("messageId")
    if message_id is None:
        message_id = generated_message_id(event)
    elif type(message_id) is not str or not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise EventRejected(
            Reason.INVALID_MESSAGE_ID,
            f"messageId must be a non-empty string of at most {MAX_MESSAGE_ID_LENGTH} characters",
        )

    user_id = get("userId")
    if type(user_id) is not str or not user_id.strip():  # the usual case costs no call
        user_id = _identity(event, "userId")
    anonymous_id = get("anonymousId")
    if type(anonymous_id) is not str or not anonymous_id.strip():
        anonymous_id = _identity(event, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise EventRejected(Reason.MISSING_IDENTITY, "neither userId nor anonymousId is set")

    for key in _OBJECT_FIELDS:
        value = get(key)
        if value is not None and type(value) is not dict:
            raise EventRejected(Reason.INVALID_FIELD, f"{key} must be an object")

    if call == "track":
        event_name = event.get("event")
        if event_name is None or (type(event_name) is str and not event_name.strip()):
            raise EventRejected(Reason.MISSING_EVENT, "track call without event")
        if type(event_name) is not str:
            raise EventRejected(Reason.INVALID_FIELD, "event must be a string")
    elif call == "group":
        _required_text(event, "groupId", Reason.MISSING_GROUP_ID)
    elif call == "alias":
        _required_text(event, "previousId", Reason.MISSING_PREVIOUS_ID)
        if user_id is None:
            raise EventRejected(Reason.MISSING_USER_ID, "alias call without userId")
    elif call in ("page", "screen"):
        for key in ("name", "category"):
            value = event.get(key)
            if value is not None and type(value) is not str:
                raise EventRejected(Reason.INVALID_FIELD, f"{key} must be a string")

    original = sent_at = received_at = None
    value = get("originalTimestamp")
    if value is not None:
        original = _timestamp("originalTimestamp", value)
    else:
        value = get("timestamp")
        if value is not None:
            original = _timestamp("timestamp", value)
    value = get("sentAt")
    if value is not None:
        sent_at = _timestamp("sentAt", value)
    value = get("receivedAt")
    if value is not None:
        received_at = _timestamp("receivedAt", value)
    return _valid_event(
        (event, call, message_id, user_id, anonymous_id, original, sent_at, received_at)
    )
