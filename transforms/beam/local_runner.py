"""What the local streaming runner needs done differently.

The BundleBasedDirectRunner (``opentrack run --streaming`` without ``--runner``)
keeps the state of every key it has ever seen until the run ends, even after the
key's state is cleared and its timers have fired: a few KB per key. Steps that key
by something unbounded (message ids) or spread work over many keys for parallelism
it does not have grow its memory for as long as it runs. Those steps ask here and
take a bounded form on this runner; Dataflow runs are untouched. Its Pub/Sub pulls
wait at most a couple of seconds (``shorten_pubsub_pulls``), so a quiet stream's
buffered rows are written within seconds.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.runners.direct import transform_evaluator
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner


def on_local_streaming_runner(pipeline: beam.Pipeline) -> bool:
    return isinstance(pipeline.runner, BundleBasedDirectRunner)


# The local runner pulls Pub/Sub with a 30 s deadline, which the emulator holds when the
# subscription is empty; no timer of the graph fires meanwhile, so rows buffered for a
# write (a batch waiting its second) would wait up to 30 s on a quiet stream. A deadline
# of 2 s is answered, empty, after about 1 s.
LOCAL_PULL_DEADLINE_S = 2.0


class _ShortPulls:
    """A SubscriberClient whose pulls wait at most ``deadline`` seconds."""

    def __init__(self, client: Any, deadline: float) -> None:
        self._client = client
        self._deadline = deadline

    def pull(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        capped = self._deadline if timeout is None else min(timeout, self._deadline)
        return self._client.pull(*args, timeout=capped, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def shorten_pubsub_pulls(deadline: float = LOCAL_PULL_DEADLINE_S) -> None:
    """Make the local runner's Pub/Sub pulls wait at most ``deadline`` seconds (in this
    process; Dataflow reads Pub/Sub its own way). Beam's reader is its own class, with
    no option for this, so its client accessor is wrapped; idempotent."""
    global _BEAMS_CLIENT
    reader = transform_evaluator._PubSubReadEvaluator
    if _BEAMS_CLIENT is None:
        _BEAMS_CLIENT = reader.__dict__["_get_subscriber_client"]
    original = _BEAMS_CLIENT

    def short_client(cls: Any, transform: Any) -> Any:
        return _ShortPulls(original.__func__(cls, transform), deadline)

    setattr(reader, "_get_subscriber_client", classmethod(short_client))  # noqa: B010 - a Beam class's method


_BEAMS_CLIENT: Any = None  # Beam's own accessor, kept once so wrapping again does not stack
