"""One dead-letter shape for every stage, with stable machine-readable reasons.

Every input message ends as rows in its tables or as exactly one dead letter;
the dead letter carries enough to understand the failure and to replay the
original payload after a fix.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

# Dead letters keep at most this much of the original payload (BigQuery's
# streaming row limit is 10 MB; replay of a larger payload is pointless anyway).
MAX_DEAD_LETTER_PAYLOAD = 1_000_000


class Stage(StrEnum):
    VALIDATE = "validate"
    NORMALIZE = "normalize"
    SCHEMA = "schema"
    WRITE = "write"


class Reason(StrEnum):
    """Why a message was not loaded. Values are stable: alert and replay on them."""

    INVALID_ENCODING = "invalid_encoding"  # payload is not UTF-8
    INVALID_JSON = "invalid_json"  # not strict JSON (RFC 8259; no NaN/Infinity)
    NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object
    PAYLOAD_TOO_LARGE = "payload_too_large"  # over the event or batch byte limit
    TOO_DEEP = "too_deep"  # nesting deeper than the limit
    EMPTY_BATCH = "empty_batch"  # {"batch": []} or a batch that is not an array
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"  # type not one of the six Segment calls
    INVALID_MESSAGE_ID = "invalid_message_id"  # messageId not a non-empty string <= 255
    MISSING_IDENTITY = "missing_identity"  # neither userId nor anonymousId
    INVALID_IDENTITY = "invalid_identity"  # an id that is not a string or integer
    MISSING_EVENT = "missing_event"  # track without an event name
    MISSING_GROUP_ID = "missing_group_id"
    MISSING_PREVIOUS_ID = "missing_previous_id"
    MISSING_USER_ID = "missing_user_id"  # alias without userId
    INVALID_FIELD = "invalid_field"  # traits/properties/context not objects, name not text
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_SOURCE = "invalid_source"  # source name gives no dataset name
    COLUMN_LIMIT = "column_limit"  # the table would pass BigQuery's 10,000 columns
    SCHEMA_MISMATCH = "schema_mismatch"  # a value that cannot go into its column
    WRITE_REJECTED = "write_rejected"  # BigQuery refused the row (its error is kept)
    LOAD_REJECTED = "load_rejected"  # a load job refused the row (BigQuery's error is kept)
    INTERNAL_ERROR = "internal_error"  # a bug: the event is kept, the error logged


class EventRejected(Exception):
    """Raised by the pure validation/normalization functions for one message."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeadLetter(NamedTuple):
    stage: str
    reason: str
    error: str
    payload: str
    payload_truncated: bool
    source: str | None
    received_at: str | None
    message_id: str | None

    def to_json_dict(self) -> dict[str, Any]:
        return self._asdict()


def payload_text(payload: bytes | str | dict[str, Any]) -> tuple[str, bool]:
    """The original payload as text (invalid UTF-8 escaped), cut to the limit."""
    if isinstance(payload, dict):
        text = orjson.dumps(payload).decode()
    elif isinstance(payload, bytes):
        text = payload[: MAX_DEAD_LETTER_PAYLOAD + 4].decode("utf-8", "backslashreplace")
    else:
        text = payload
    if len(text) > MAX_DEAD_LETTER_PAYLOAD:
        return text[:MAX_DEAD_LETTER_PAYLOAD], True
    return text, False


def make_dead_letter(
    stage: Stage,
    rejection: EventRejected,
    payload: bytes | str | dict[str, Any],
    *,
    source: str | None = None,
    received_at: str | None = None,
    message_id: str | None = None,
) -> DeadLetter:
    text, truncated = payload_text(payload)
    return DeadLetter(
        stage=str(stage),
        reason=str(rejection.reason),
        error=rejection.detail,
        payload=text,
        payload_truncated=truncated,
        source=source,
        received_at=received_at,
        message_id=message_id,
    )


# Columns of the dead-letter table (one per source dataset).
DEAD_LETTER_SCHEMA: dict[str, str] = {
    "id": "STRING",
    "stage": "STRING",
    "reason": "STRING",
    "error": "STRING",
    "payload": "STRING",
    "payload_truncated": "BOOLEAN",
    "source": "STRING",
    "received_at": "TIMESTAMP",
    "message_id": "STRING",
    "loaded_at": "TIMESTAMP",
}


def dead_letter_id(dead_letter: DeadLetter) -> str:
    """Stable id of a failure (stage, reason, payload): reruns of the same input
    give the same id, so idempotent writes store each failure once."""
    digest = hashlib.sha256(
        "\x00".join((dead_letter.stage, dead_letter.reason, dead_letter.payload)).encode(
            "utf-8", "surrogatepass"
        )
    )
    return digest.hexdigest()[:32]


def dead_letter_row(dead_letter: DeadLetter, loaded_at: str) -> dict[str, Any]:
    """The dead letter as a row of the dead-letter table (nulls left out)."""
    row = {key: value for key, value in dead_letter._asdict().items() if value is not None}
    row["id"] = dead_letter_id(dead_letter)
    row["loaded_at"] = loaded_at
    return row


def dead_letter_dataset(source: str | None, default_source: str) -> str:
    """Dataset that stores a dead letter: its source's, else the default source's.

    A payload that never parsed, or whose source name is unusable, has no
    dataset of its own; its dead letter lands with the default source.
    """
    from transforms.model.naming import dataset_name  # local: naming does not need dead letters

    for candidate in (source, default_source):
        if candidate:
            try:
                return dataset_name(candidate)
            except ValueError:
                continue
    raise ValueError(f"default source {default_source!r} gives no dataset name")
