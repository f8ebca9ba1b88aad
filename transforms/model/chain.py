"""The pure event model: raw payload -> routed events -> table rows or dead letters.

The Beam DoFns in ``transforms.beam.event_model`` call these two stages one by one;
``opentrack preview`` and the benchmark call ``process_payload``, the whole
chain, so what a user previews is exactly what the pipeline writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from transforms.model.deadletter import DeadLetter, EventRejected, Reason, Stage, make_dead_letter
from transforms.model.naming import NamingConvention
from transforms.model.normalize import TableRow, normalize_event
from transforms.model.records import builder
from transforms.model.route import DatasetResolver, SourceConfig, resolve_source
from transforms.model.timestamps import format_timestamp
from transforms.model.validate import Limits, ValidEvent, parse_payload, validate_event

_LOG = logging.getLogger(__name__)
REPLAY_ATTRIBUTE = "opentrack_replay"  # set by `opentrack replay` on the messages it publishes


class RawMessage(NamedTuple):
    """One input message: a file line or a Pub/Sub message."""

    payload: bytes
    attributes: Mapping[str, str] | None = None
    received_at: datetime | None = None  # Pub/Sub publish time; None: read time


class RoutedEvent(NamedTuple):
    """A valid event with its source, dataset and the time the pipeline got it."""

    valid: ValidEvent
    source: str
    dataset: str
    received_at: datetime
    payload: bytes | dict[str, Any]  # the original, for a dead letter downstream
    replayed: bool = False  # re-fed by `opentrack replay`: not a duplicate of its first try
    # The receive time is the message's own (Pub/Sub publish time), not the read time of
    # a file: only then does it say when the event arrived, so only then is the clock
    # skew of its sender corrected against it (``transforms.model.normalize``).
    receive_time_known: bool = True


_routed_event = builder(RoutedEvent)


@dataclass
class ModelConfig:
    """Everything the pure chain needs; picklable, so DoFns can carry it."""

    limits: Limits = field(default_factory=Limits)
    sources: SourceConfig = field(default_factory=SourceConfig)

    def __post_init__(self) -> None:
        self.naming = NamingConvention()
        self.datasets = DatasetResolver()

    def __getstate__(self) -> dict[str, Any]:
        return {"limits": self.limits, "sources": self.sources}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.limits = state["limits"]
        self.sources = state["sources"]
        self.__post_init__()


def _as_rejection(error: Exception) -> EventRejected:
    """Known rejections pass through; anything else is a bug, logged with its trace."""
    if isinstance(error, EventRejected):
        return error
    _LOG.warning("internal error while processing an event", exc_info=error)
    return EventRejected(Reason.INTERNAL_ERROR, f"{type(error).__name__}: {error}")


def route_payload(
    message: RawMessage, received_at: datetime, config: ModelConfig
) -> Iterator[RoutedEvent | DeadLetter]:
    """Stage 1 (validate): split, validate and route every event of a payload."""
    attributes = message.attributes
    received_text: str | None = None
    sources = config.sources
    # Known before parsing, so even an unparseable payload keeps its source.
    attribute_source = (
        attributes.get(sources.source_attribute) or None
        if attributes and sources.source_attribute
        else None
    )
    replayed = bool(attributes and attributes.get(REPLAY_ATTRIBUTE))
    receive_time_known = message.received_at is not None
    for parsed in parse_payload(message.payload, config.limits):
        source: str | None = attribute_source
        try:
            event, rejection, payload = parsed
            if rejection is not None:
                raise rejection
            assert event is not None
            if source is None:  # the attribute, when given, wins over everything
                source = (
                    resolve_source(event, attributes, sources)
                    if sources.source_field
                    else sources.default_source
                )
            dataset = config.datasets(source)
            yield _routed_event(
                (
                    validate_event(event),
                    source,
                    dataset,
                    received_at,
                    payload,
                    replayed,
                    receive_time_known,
                )
            )
        except Exception as error:  # noqa: BLE001 - a bug must not lose the event
            rejection = _as_rejection(error)
            if received_text is None:
                received_text = format_timestamp(received_at)
            message_id = parsed.event.get("messageId") if parsed.event else None
            yield make_dead_letter(
                Stage.VALIDATE,
                rejection,
                parsed.payload,
                source=source,
                received_at=received_text,
                message_id=message_id if type(message_id) is str else None,
            )


def rows_for(
    routed: RoutedEvent,
    loaded_at: str,
    config: ModelConfig,
    dropped: list[str] | None = None,
) -> list[TableRow] | DeadLetter:
    """Stage 2 (normalize): the table rows of one routed event."""
    try:
        return normalize_event(
            routed.valid,
            dataset=routed.dataset,
            received_at=routed.received_at,
            receive_time_known=routed.receive_time_known,
            loaded_at=loaded_at,
            naming=config.naming,
            dropped=dropped,
            payload=routed.payload,
        )
    except Exception as error:  # noqa: BLE001 - a bug must not lose the event
        rejection = _as_rejection(error)
        return make_dead_letter(
            Stage.NORMALIZE,
            rejection,
            routed.payload,
            source=routed.source,
            received_at=format_timestamp(routed.received_at),
            message_id=routed.valid.message_id,
        )


def process_payload(
    message: RawMessage, received_at: datetime, loaded_at: str, config: ModelConfig
) -> list[TableRow | DeadLetter]:
    """The whole chain for one payload: every row and dead letter it yields."""
    out: list[TableRow | DeadLetter] = []
    for item in route_payload(message, message.received_at or received_at, config):
        if isinstance(item, DeadLetter):
            out.append(item)
            continue
        rows = rows_for(item, loaded_at, config)
        if isinstance(rows, DeadLetter):
            out.append(rows)
        else:
            out.extend(rows)
    return out
