"""Turn one valid event into the warehouse rows Segment would write for it.

track    -> ``<event table>`` (common columns + properties) and ``tracks``
            (common columns only)
identify -> ``identifies`` (common + traits) and, with a userId, a ``users``
            state row (``id`` = userId, traits, received_at, timestamp, uuid_ts,
            loaded_at; ``timestamp`` orders the updates of one user)
page     -> ``pages`` (common + name, category + properties)
screen   -> ``screens`` (common + name, category + properties)
group    -> ``groups`` (common + group_id + traits)
alias    -> ``aliases`` (common + previous_id)

Common columns: id, anonymous_id, user_id, received_at, sent_at,
original_timestamp, timestamp (skew-corrected), uuid_ts, loaded_at, and
``context_*`` (the context object flattened). track rows add event (the table
name) and event_text (the name as sent).

Properties and traits are flattened without prefix (``{"a": {"b": 1}}`` ->
``a_b``); arrays become JSON text; nulls and empty objects make no column.
A property or trait may never take a reserved column of its table nor a
``context_*`` column: if its value equals the reserved column's it is
redundant and skipped, otherwise it is kept as ``properties_<name>`` /
``traits_<name>``. When two keys name the same column (``userName`` and
``user_name``), the first in the payload wins and the other is reported in
``dropped``.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Final, NamedTuple

from transforms.model.deadletter import EventRejected, Reason
from transforms.model.infer import (
    BOOLEAN,
    FLOAT,
    FLOAT64_EXACT,
    INTEGER,
    STRING,
    TIMESTAMP,
    infer,
)
from transforms.model.naming import NamingConvention
from transforms.model.records import builder
from transforms.model.timestamps import (
    TimestampError,
    canonical_timestamp,
    format_timestamp,
    receive_time_text,
    skew_corrected,
    timestamp_text,
)
from transforms.model.validate import ValidEvent

STANDARD_COLUMNS: Final[dict[str, str]] = {
    "id": STRING,
    "anonymous_id": STRING,
    "user_id": STRING,
    "received_at": TIMESTAMP,
    "sent_at": TIMESTAMP,
    "original_timestamp": TIMESTAMP,
    "timestamp": TIMESTAMP,
    "uuid_ts": TIMESTAMP,
    "loaded_at": TIMESTAMP,
    "event": STRING,
    "event_text": STRING,
    "name": STRING,
    "category": STRING,
    "group_id": STRING,
    "previous_id": STRING,
}
COMMON_COLUMNS: Final = frozenset(
    {
        "id",
        "anonymous_id",
        "user_id",
        "received_at",
        "sent_at",
        "original_timestamp",
        "timestamp",
        "uuid_ts",
        "loaded_at",
    }
)
TRACK_RESERVED: Final = COMMON_COLUMNS | {"event", "event_text"}
PAGE_RESERVED: Final = COMMON_COLUMNS | {"name", "category"}
GROUP_RESERVED: Final = COMMON_COLUMNS | {"group_id"}
ALIAS_RESERVED: Final = COMMON_COLUMNS | {"previous_id"}
# The schema of _common's columns for each combination of the optional ones
# (anonymous_id, user_id, sent_at, original_timestamp), in the order it writes them.
_COMMON_SCHEMAS: Final = {
    present: {
        column: STANDARD_COLUMNS[column]
        for column, wanted in zip(
            (
                "id",
                "received_at",
                "timestamp",
                "uuid_ts",
                "loaded_at",
                "anonymous_id",
                "user_id",
                "sent_at",
                "original_timestamp",
            ),
            (True,) * 5 + present,
            strict=True,
        )
        if wanted
    }
    for present in itertools.product((False, True), repeat=4)
}
USERS_COLUMNS: Final = ("id", "received_at", "timestamp", "uuid_ts", "loaded_at")
_CONTEXT_PREFIX: Final = "context_"
_INFINITIES: Final = (float("inf"), float("-inf"))


class TableRow(NamedTuple):
    """One row for one destination table, with the type of every column in it."""

    dataset: str
    table: str
    row: dict[str, Any]
    schema: dict[str, str]
    # The event as received, for a dead letter made after normalization (schema step,
    # write, load): replay re-feeds the event, never the flattened row. None for rows
    # that are not an event's (dead letters, users).
    event: bytes | dict[str, Any] | None = None
    # The text as sent of the timestamp-looking strings whose canonical form the row
    # holds (column -> text), one dict shared by an event's rows: a column that turns
    # out STRING stores the text as sent (``pipeline.warehouse.schema.fit_row``).
    originals: dict[str, str] | None = None


_table_row = builder(TableRow)


class _Guard(NamedTuple):
    """What properties/traits may not overwrite, and where they go instead."""

    origin: str  # "properties" or "traits": prefix for a displaced column
    protected: dict[str, Any]  # the row's standard and context columns
    reserved: frozenset[str]  # the table's reserved columns, present or not


_guard = builder(_Guard)


def _flatten(
    obj: dict[str, Any],
    parent: str,
    naming: NamingConvention,
    row: dict[str, Any],
    schema: dict[str, str],
    guard: _Guard | None,
    dropped: list[str] | None,
    originals: dict[str, str],
) -> None:
    """Flatten ``obj`` into ``row``/``schema`` under the column ``parent``; the text of
    each timestamp written in canonical form goes to ``originals``.

    The hot loop of the product: scalar inference is inlined for the common
    JSON types and the name cache is read directly.
    """
    try:
        names = naming.columns_under[parent]
    except KeyError:
        names = naming.children(parent)
    for key, value in obj.items():
        try:  # a subscript is cheaper than .get(), and a miss is rare
            column = names[key]
        except KeyError:
            column = naming.child_column(parent, key)
        kind = type(value)
        if kind is str:
            column_type = STRING
            if len(value) >= 16 and value[4] == "-":
                stamp = canonical_timestamp(value)
                if stamp is not None:
                    column_type, sent, value = TIMESTAMP, value, stamp
        elif kind is dict:
            if value:
                _flatten(value, column, naming, row, schema, guard, dropped, originals)
            continue
        elif kind is int and -FLOAT64_EXACT <= value <= FLOAT64_EXACT:
            column_type = INTEGER
        elif kind is float and value == value and value not in _INFINITIES:
            column_type = FLOAT
        elif kind is bool:
            column_type = BOOLEAN
        elif value is None:
            continue
        else:
            sent = value
            column_type, value = infer(value)  # type: ignore[misc]
        if guard is not None and (
            column.startswith(_CONTEXT_PREFIX)
            # Reserved and protected columns are all standard ones: a cheap first test.
            or (
                column in STANDARD_COLUMNS
                and (column in guard.reserved or column in guard.protected)
            )
        ):
            if guard.protected.get(column) == value:
                continue  # the same value as the reserved column: redundant
            column = naming.child_column(guard.origin, column)
        if column in row:
            if dropped is not None:
                dropped.append(column)
            continue
        row[column] = value
        schema[column] = column_type
        if column_type is TIMESTAMP and value != sent:  # ``sent`` is set for every TIMESTAMP
            originals[column] = sent


def _common(
    valid: ValidEvent,
    received_at: datetime,
    receive_time_known: bool,
    loaded_at: str,
    naming: NamingConvention,
    originals: dict[str, str],
) -> tuple[dict[str, Any], dict[str, str]]:
    event, _, message_id, user_id, anonymous_id, original, sent_at, given_received = valid
    correct_skew = receive_time_known or given_received is not None
    if given_received is not None:
        received = given_received
        received_text = timestamp_text(event["receivedAt"], received)
    else:
        received = received_at
        received_text = receive_time_text(received)
    row: dict[str, Any] = {"id": message_id, "received_at": received_text}
    if original is None:
        row["timestamp"] = received_text
    else:
        original_text = event.get("originalTimestamp")
        if original_text is None:
            original_text = event["timestamp"]
        original_text = timestamp_text(original_text, original)
        if sent_at is None or not correct_skew:
            row["timestamp"] = original_text
        else:
            try:
                corrected = skew_corrected(received, sent_at, original)
            except TimestampError as exc:
                raise EventRejected(Reason.INVALID_TIMESTAMP, str(exc)) from exc
            row["timestamp"] = format_timestamp(corrected)
    row["uuid_ts"] = row["loaded_at"] = loaded_at
    if anonymous_id is not None:
        row["anonymous_id"] = anonymous_id
    if user_id is not None:
        row["user_id"] = user_id
    if sent_at is not None:
        row["sent_at"] = timestamp_text(event["sentAt"], sent_at)
    if original is not None:
        row["original_timestamp"] = original_text
    schema = dict(
        _COMMON_SCHEMAS[
            anonymous_id is not None, user_id is not None, sent_at is not None, original is not None
        ]
    )
    context = event.get("context")
    if context:
        _flatten(context, "context", naming, row, schema, None, None, originals)
    return row, schema


def _with_fields(
    base: dict[str, Any],
    base_schema: dict[str, str],
    fields: dict[str, Any] | None,
    origin: str,
    reserved: frozenset[str],
    naming: NamingConvention,
    dropped: list[str] | None,
    originals: dict[str, str],
) -> tuple[dict[str, Any], dict[str, str]]:
    row = dict(base)
    schema = dict(base_schema)
    if fields:
        guard = _guard((origin, base, reserved))
        _flatten(fields, "", naming, row, schema, guard, dropped, originals)
    return row, schema


def normalize_event(
    valid: ValidEvent,
    *,
    dataset: str,
    received_at: datetime,
    loaded_at: str,
    naming: NamingConvention,
    dropped: list[str] | None = None,
    payload: bytes | dict[str, Any] | None = None,
    receive_time_known: bool = True,
) -> list[TableRow]:
    """The rows one event becomes. ``received_at`` is the pipeline's receive time,
    used when the payload has no ``receivedAt``; Segment's clock-skew correction of
    ``timestamp`` runs only against a receive time that says when the event arrived
    (the payload's ``receivedAt``, or ``receive_time_known``: a Pub/Sub publish time),
    never against the moment a file is read, which may be months later. ``loaded_at``
    is the canonical load time written to ``uuid_ts`` and ``loaded_at``; ``payload``,
    the event as received, rides along with every row but ``users``'."""
    event = valid.event
    sent: dict[str, str] = {}
    base, base_schema = _common(valid, received_at, receive_time_known, loaded_at, naming, sent)
    call = valid.type

    if call == "track":
        event_text = event["event"]
        table = naming.table(event_text)
        base["event"] = table
        base["event_text"] = event_text
        base_schema["event"] = base_schema["event_text"] = STRING
        row, schema = _with_fields(
            base,
            base_schema,
            event.get("properties"),
            "properties",
            TRACK_RESERVED,
            naming,
            dropped,
            sent,
        )
        return [
            _table_row((dataset, table, row, schema, payload, sent or None)),
            _table_row((dataset, "tracks", base, base_schema, payload, sent or None)),
        ]

    if call == "identify":
        row, schema = _with_fields(
            base, base_schema, event.get("traits"), "traits", COMMON_COLUMNS, naming, dropped, sent
        )
        rows = [_table_row((dataset, "identifies", row, schema, payload, sent or None))]
        if valid.user_id is not None:
            users_row = {"id": valid.user_id}
            users_schema = {"id": STRING}
            for column in USERS_COLUMNS[1:]:
                users_row[column] = base[column]
                users_schema[column] = TIMESTAMP
            for column, value in row.items():
                if column not in base:
                    users_row[column] = value
                    users_schema[column] = schema[column]
            rows.append(_table_row((dataset, "users", users_row, users_schema, None, sent or None)))
        return rows

    if call in ("page", "screen"):
        properties = event.get("properties") or {}
        name = event.get("name")
        if name is None and type(properties.get("name")) is str:
            name = properties["name"]
        if name is not None:
            base["name"] = name
            base_schema["name"] = STRING
        if event.get("category") is not None:
            base["category"] = event["category"]
            base_schema["category"] = STRING
        row, schema = _with_fields(
            base, base_schema, properties, "properties", PAGE_RESERVED, naming, dropped, sent
        )
        table = "pages" if call == "page" else "screens"
        return [_table_row((dataset, table, row, schema, payload, sent or None))]

    if call == "group":
        base["group_id"] = str(event["groupId"])
        base_schema["group_id"] = STRING
        row, schema = _with_fields(
            base, base_schema, event.get("traits"), "traits", GROUP_RESERVED, naming, dropped, sent
        )
        return [_table_row((dataset, "groups", row, schema, payload, sent or None))]

    # alias
    base["previous_id"] = str(event["previousId"])
    base_schema["previous_id"] = STRING
    return [_table_row((dataset, "aliases", base, base_schema, payload, sent or None))]
