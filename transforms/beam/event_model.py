"""Beam adapters of the event model: thin DoFns around ``transforms.model.chain``.

``EventsToRows`` takes ``RawMessage`` elements and returns an
``EventsToRowsResult`` with two PCollections: ``rows`` (``TableRow``) and
``dead_letters`` (``DeadLetter``, from every stage). Step labels are stable
(streaming updates depend on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.deduplicate import DeduplicatePerKey
from apache_beam.utils.timestamp import Duration

from transforms.beam.dedup import DeduplicateInProcess, DedupState, resolved_state
from transforms.model.chain import ModelConfig, RawMessage, RoutedEvent, route_payload, rows_for
from transforms.model.deadletter import DeadLetter
from transforms.model.normalize import TableRow
from transforms.model.timestamps import format_timestamp

ROWS = "rows"
VALID = "valid"
DEAD_LETTERS = "dead_letters"
METRICS_NAMESPACE = "opentrack"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FixedClock:
    """A picklable clock that always answers the same instant (tests, replays)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def line_to_message(line: bytes) -> Iterator[RawMessage]:
    """A file line as a message; blank lines are not messages (JSONL convention)."""
    if line.strip():
        yield RawMessage(line)


class ValidateEvents(beam.DoFn):
    """Split, validate and route payloads; rejections go to ``dead_letters``."""

    def __init__(self, config: ModelConfig, clock: Clock = utc_now) -> None:
        self._config = config
        self._clock = clock
        self._received = Metrics.counter(METRICS_NAMESPACE, "validate_received_messages")
        self._valid = Metrics.counter(METRICS_NAMESPACE, "validate_valid_events")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "validate_dead_letters")

    def start_bundle(self) -> None:
        # One receive time per bundle for messages without their own (file lines): no
        # per-message clock call, and its canonical text is formatted once.
        self._bundle_received_at = self._clock()

    def process(self, message: RawMessage) -> Iterator[RoutedEvent | TaggedOutput]:
        self._received.inc()
        received_at = message.received_at or self._bundle_received_at
        for item in route_payload(message, received_at, self._config):
            if isinstance(item, DeadLetter):
                self._dead.inc()
                Metrics.counter(METRICS_NAMESPACE, f"dead_letter_{item.reason}").inc()
                yield TaggedOutput(DEAD_LETTERS, item)
            else:
                self._valid.inc()
                yield item


class NormalizeEvents(beam.DoFn):
    """Turn each routed event into its table rows."""

    def __init__(self, config: ModelConfig, clock: Clock = utc_now) -> None:
        self._config = config
        self._clock = clock
        self._loaded_at = ""
        self._events = Metrics.counter(METRICS_NAMESPACE, "normalize_events")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "normalize_rows")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "normalize_dead_letters")
        self._collisions = Metrics.counter(METRICS_NAMESPACE, "normalize_dropped_colliding_keys")

    def start_bundle(self) -> None:
        # One load time per bundle: uuid_ts/loaded_at need no per-row clock call.
        self._loaded_at = format_timestamp(self._clock())

    def process(self, routed: RoutedEvent) -> Iterator[TableRow | TaggedOutput]:
        self._events.inc()
        dropped: list[str] = []
        result = rows_for(routed, self._loaded_at, self._config, dropped)
        if dropped:
            self._collisions.inc(len(dropped))
        if isinstance(result, DeadLetter):
            self._dead.inc()
            Metrics.counter(METRICS_NAMESPACE, f"dead_letter_{result.reason}").inc()
            yield TaggedOutput(DEAD_LETTERS, result)
            return
        self._rows.inc(len(result))
        yield from result


class EventsToRowsResult(NamedTuple):
    rows: PCollection
    dead_letters: PCollection


def dedup_key(routed: RoutedEvent) -> tuple[str, RoutedEvent]:
    """Events are the same when their dataset and message id are; a replay of a
    dead letter is not a repeat of the attempt that failed. A plain string key
    keeps state lookups deterministic across workers."""
    replay = "replay" if routed.replayed else "first"
    return f"{routed.dataset}\x00{routed.valid.message_id}\x00{replay}", routed


def _counted(element: object, name: str) -> object:
    Metrics.counter(METRICS_NAMESPACE, name).inc()
    return element


class DeduplicateEvents(beam.PTransform):
    """Drops repeats of a message id (per dataset) seen within ``window_seconds`` of
    event time (the publish time in streaming); ``state`` says where the seen ids are
    kept (``transforms.beam.dedup``: Beam's ``DeduplicatePerKey`` on Dataflow).
    ``dedup_events_in - dedup_events_out`` counts the duplicates dropped."""

    def __init__(self, window_seconds: float, state: DedupState = "auto") -> None:
        super().__init__()
        self._window = window_seconds
        self._state = state

    def expand(self, events: PCollection) -> PCollection:
        keyed = (
            events
            | "CountIn" >> beam.Map(_counted, "dedup_events_in")
            | "KeyByMessageId" >> beam.Map(dedup_key).with_output_types(tuple[str, Any])
        )
        if resolved_state(self._state, events.pipeline) == "in_process":
            unique = keyed | "DeduplicateInProcess" >> beam.ParDo(
                DeduplicateInProcess(self._window)
            )
        else:
            unique = (
                keyed
                | "DeduplicatePerKey"
                >> DeduplicatePerKey(event_time_duration=Duration(seconds=self._window))
                | "DropKey" >> beam.Values()
            )
        return unique | "CountOut" >> beam.Map(_counted, "dedup_events_out")


class EventsToRows(beam.PTransform):
    """RawMessage -> (rows, dead_letters): the event model as one composite.

    With ``dedup_window_seconds`` (streaming), repeated message ids within the
    window are dropped between validation and normalization.
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        clock: Clock = utc_now,
        dedup_window_seconds: float | None = None,
        dedup_state: DedupState = "auto",
    ) -> None:
        super().__init__()
        self._config = config or ModelConfig()
        self._clock = clock
        self._dedup_window = dedup_window_seconds
        self._dedup_state = dedup_state

    def expand(self, messages: PCollection) -> EventsToRowsResult:
        validated = messages | "Validate" >> beam.ParDo(
            ValidateEvents(self._config, self._clock)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        valid = validated[VALID]
        if self._dedup_window:
            valid = valid | "Deduplicate" >> DeduplicateEvents(
                self._dedup_window, self._dedup_state
            )
        normalized = valid | "Normalize" >> beam.ParDo(
            NormalizeEvents(self._config, self._clock)
        ).with_outputs(DEAD_LETTERS, main=ROWS)
        dead_letters = (
            validated[DEAD_LETTERS],
            normalized[DEAD_LETTERS],
        ) | "CollectDeadLetters" >> beam.Flatten()
        return EventsToRowsResult(rows=normalized[ROWS], dead_letters=dead_letters)
