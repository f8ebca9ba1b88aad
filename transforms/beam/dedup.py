"""Where the stream's deduplication state lives (``DeduplicateEvents`` in
``transforms.beam.event_model`` drops repeated message ids: Pub/Sub delivers at least once).

One rule, two ways to keep it. An event is dropped when an event with the same key
(dataset, message id, first try or replay) came less than ``window_seconds`` of
event time (the publish time) before it.

* ``keyed``: Beam's ``DeduplicatePerKey``, a state cell and an event-time timer per
  key. Any runner; what runs on Dataflow.
* ``in_process``: a dict of first-seen times in the worker process, pruned as event
  time moves on. For the local streaming runner, which never forgets a key
  (``transforms.beam.local_runner``): under ``keyed`` every message id kept a state object
  of about 1.2 KB for the life of the run. That runner is one process, so the
  process's memory holds the whole state either way.

``auto`` (the default) picks ``in_process`` on the local streaming runner, ``keyed``
everywhere else. ``in_process`` measures the window from the newest event time it
has seen rather than from the watermark; with publish times as event times the two
are the same to within the runner's watermark lag.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

import apache_beam as beam

from transforms.beam.local_runner import on_local_streaming_runner

DedupState = Literal["auto", "keyed", "in_process"]


class SeenKeys:
    """First-seen event times of the keys inside the window, oldest first."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self.first_seen: dict[str, float] = {}
        self._arrivals: deque[tuple[float, str]] = deque()
        self._newest = float("-inf")

    def admit(self, key: str, event_time: float) -> bool:
        """True (and remembered) if ``key`` was not seen within the window before."""
        self._newest = max(self._newest, event_time)
        horizon = self._newest - self.window
        arrivals, first_seen = self._arrivals, self.first_seen
        while arrivals and arrivals[0][0] < horizon:
            seen_at, old = arrivals.popleft()
            if first_seen.get(old) == seen_at:  # not re-admitted since
                del first_seen[old]
        last_seen = first_seen.get(key)
        if last_seen is not None and event_time - last_seen < self.window:
            return False
        first_seen[key] = event_time
        arrivals.append((event_time, key))
        return True


# The DirectRunner unpickles a fresh DoFn for every bundle, so the seen keys live
# at module level, one SeenKeys per transform (by its token), shared by its threads.
_SEEN: dict[str, SeenKeys] = {}
_SEEN_LOCK = threading.Lock()


class DeduplicateInProcess(beam.DoFn):
    """(key, value) -> value, the first time ``key`` is seen within the window."""

    def __init__(self, window_seconds: float) -> None:
        self._window = float(window_seconds)
        self._token = uuid.uuid4().hex

    def process(
        self, element: tuple[str, Any], timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        key, value = element
        with _SEEN_LOCK:
            seen = _SEEN.get(self._token)
            if seen is None:
                seen = _SEEN[self._token] = SeenKeys(self._window)
            admitted = seen.admit(key, float(timestamp))
        if admitted:
            yield value


def resolved_state(state: DedupState, pipeline: beam.Pipeline) -> DedupState:
    """``auto`` made concrete for the runner ``pipeline`` will run on."""
    if state != "auto":
        return state
    return "in_process" if on_local_streaming_runner(pipeline) else "keyed"
