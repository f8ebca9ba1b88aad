"""Streaming reads from the Pub/Sub emulator on Beam's BundleBasedDirectRunner.

The recipe these tests pin down (apache_beam 2.77):

- options ``--streaming --runner=BundleBasedDirectRunner`` (``DirectRunner`` picks the same
  runner for a Pub/Sub read, after failing to fetch Prism offline); PUBSUB_EMULATOR_HOST in
  the environment before ``run()``: the runner's SubscriberClient reads it.
- ``pipeline.run()`` returns at once (never use ``with Pipeline()``: its exit waits forever;
  ``wait_until_finish(duration=...)`` raises NotImplementedError on this runner).
- The reader pulls at most 10 messages per bundle and acks them before they are processed
  (at-most-once: a message pulled while the pipeline stops is lost). An empty pull is held
  by the emulator for ~30 s; the watermark only moves when a pull returns.
- Stopping: ``cancel()`` joins the runner's workers, so it waits for that held pull, ~30 s.
  ``_stop`` cancels in a thread and publishes wake-up messages until it returns.

Not supported on this runner, so not tested here: ``id_label``; PeriodicImpulse (and so the
"slowly updating side input"; run() raises "Transform node ...GenSequence/ProcessKeyedElements
/GroupByKey/GroupByKey, _GroupByKeyOnly) was not replaced as expected"); any side input from an
unbounded source in the global window (main-input bundles wait for its watermark to reach the
end of the global window, i.e. forever). A bounded side input (read once) works.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState
from google.cloud import pubsub_v1

from pipeline import localstack

RUNNER = "BundleBasedDirectRunner"
DELIVERY_TIMEOUT_S = 60.0
CANCEL_TIMEOUT_S = 60.0  # generous: it is a bug if _stop needs more than a few seconds
WAKE_UP = "opentrack_wake_up"  # attribute of the messages that only end a held pull


@dataclass(frozen=True)
class Channel:
    topic: str
    subscription: str


@dataclass(frozen=True)
class Sent:
    data: bytes
    attributes: dict[str, str]


@pytest.fixture
def channel(
    local_stack: localstack.LocalStack,
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
) -> Iterator[Channel]:
    """A fresh topic and subscription, deleted after the test."""
    name = uuid.uuid4().hex[:12]
    topic = pubsub_publisher.topic_path(local_stack.project, f"it-read-{name}")
    subscription = pubsub_subscriber.subscription_path(local_stack.project, f"it-read-{name}")
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    yield Channel(topic, subscription)
    pubsub_subscriber.delete_subscription(subscription=subscription)
    pubsub_publisher.delete_topic(topic=topic)


class Observe(beam.DoFn):
    """Appends one JSON line per element: the test sees the stream while it runs.

    The DirectRunner runs DoFns in the test's process, so the monotonic clock is shared.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def process(
        self, message: beam.io.PubsubMessage, timestamp: Any = beam.DoFn.TimestampParam
    ) -> None:
        publish_time: datetime | None = message.publish_time
        row = {
            "data": message.data.decode(),
            "attributes": message.attributes,
            "message_id": message.message_id,
            "publish_time": publish_time.timestamp() if publish_time else None,
            "event_time": float(timestamp),
            "observed_at": time.monotonic(),
        }
        with open(self._path, "a") as out:  # one short write per line: appends do not mix
            out.write(json.dumps(row) + "\n")


def _read_pipeline(subscription: str, observed: Path) -> beam.Pipeline:
    pipeline = beam.Pipeline(options=PipelineOptions(["--streaming", f"--runner={RUNNER}"]))
    _ = (
        pipeline
        | "Read" >> beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
        | "Observe" >> beam.ParDo(Observe(str(observed)))
    )
    return pipeline


def _publish(
    publisher: pubsub_v1.PublisherClient, topic: str, count: int, first: int = 0
) -> dict[str, Sent]:
    """Sent messages by the id the emulator gave them."""
    sent = {}
    futures = []
    for n in range(first, first + count):
        data = json.dumps({"type": "track", "event": "Order Completed", "n": n}).encode()
        attributes = {"source": "web", "n": str(n)}
        futures.append((publisher.publish(topic, data, **attributes), Sent(data, attributes)))
    for future, message in futures:
        sent[future.result(timeout=30)] = message
    return sent


def _observed(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: the pipeline may be in the middle of writing the last one."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    rows = [json.loads(line) for line in lines]
    return [row for row in rows if WAKE_UP not in row["attributes"]]


def _wait_for(path: Path, count: int, timeout_s: float = DELIVERY_TIMEOUT_S) -> list[dict]:
    """Poll: on this runner a streaming pipeline cannot be waited on for a duration."""
    deadline = time.monotonic() + timeout_s
    rows = _observed(path)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = _observed(path)
    return rows


def _stop(result: PipelineResult, publisher: pubsub_v1.PublisherClient, topic: str) -> float:
    """Cancel; seconds it took.

    cancel() joins the runner's workers, one of which is usually in a pull the emulator holds
    for ~30 s on an empty subscription. A message ends that pull at once, so wake-ups are
    published until cancel() returns (the dying reader acks them; Observe's readers skip them).
    """
    started = time.monotonic()
    canceller = threading.Thread(target=result.cancel, name="cancel-pipeline", daemon=True)
    canceller.start()
    while canceller.is_alive() and time.monotonic() - started < CANCEL_TIMEOUT_S:
        publisher.publish(topic, b"", **{WAKE_UP: "1"}).result(timeout=30)
        canceller.join(0.2)
    return time.monotonic() - started


def _threads_left(before: set[threading.Thread], grace_s: float = 5.0) -> list[str]:
    """Threads started since ``before`` still alive after a grace period."""
    deadline = time.monotonic() + grace_s
    new = [thread for thread in threading.enumerate() if thread not in before]
    for thread in new:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in new if thread.is_alive()]


def _assert_exactly_once(rows: list[dict], sent: dict[str, Sent], before: float) -> None:
    """Each sent message once, with its data, attributes, id and publish time."""
    assert Counter(row["message_id"] for row in rows) == Counter(sent.keys()), "lost or duplicated"
    now = time.time()
    for row in rows:
        message = sent[row["message_id"]]
        assert row["data"] == message.data.decode()
        assert row["attributes"] == message.attributes
        assert before - 1 <= row["publish_time"] <= now + 1
        # Without timestamp_attribute the element's event time is the publish time.
        assert row["event_time"] == pytest.approx(row["publish_time"], abs=1e-3)


def test_streaming_read_delivers_each_message_once_with_attributes_then_stops(
    channel: Channel, pubsub_publisher: pubsub_v1.PublisherClient, tmp_path: Path
) -> None:
    observed = tmp_path / "observed.jsonl"
    before_publish = time.time()
    sent = _publish(pubsub_publisher, channel.topic, 50)
    threads = set(threading.enumerate())
    pipeline = _read_pipeline(channel.subscription, observed)
    started = time.monotonic()
    result = pipeline.run()
    try:
        assert time.monotonic() - started < 10, "run() must not block in streaming"
        assert result.state == PipelineState.RUNNING
        rows = _wait_for(observed, len(sent))
    finally:
        cancel_s = _stop(result, pubsub_publisher, channel.topic)
    first_s = min(row["observed_at"] for row in rows) - started if rows else float("nan")
    print(f"\npubsub read: first message {first_s:.2f} s after run(); cancel {cancel_s:.2f} s")
    _assert_exactly_once(rows, sent, before_publish)
    assert result.state == PipelineState.CANCELLED
    assert cancel_s < 10
    assert _threads_left(threads) == []  # nothing keeps the test process alive
    time.sleep(1)
    assert _observed(observed) == rows  # nothing more, nothing twice, after cancel


def test_streaming_read_throughput(
    channel: Channel, pubsub_publisher: pubsub_v1.PublisherClient, tmp_path: Path
) -> None:
    """2,000 messages waiting in the subscription: all of them, once, within the timeout."""
    count = 2_000
    observed = tmp_path / "observed.jsonl"
    before_publish = time.time()
    sent = _publish(pubsub_publisher, channel.topic, count)
    pipeline = _read_pipeline(channel.subscription, observed)
    started = time.monotonic()
    result = pipeline.run()
    try:
        rows = _wait_for(observed, count)
    finally:
        _stop(result, pubsub_publisher, channel.topic)
    assert len(rows) == count, f"{len(rows)} of {count} in {DELIVERY_TIMEOUT_S:.0f} s"
    times = sorted(row["observed_at"] for row in rows)
    print(
        f"\npubsub read: {count} messages, first after {times[0] - started:.2f} s, "
        f"{(count - 1) / (times[-1] - times[0]):.0f} events/s first to last, "
        f"{count / (times[-1] - started):.0f} events/s from run()"
    )
    _assert_exactly_once(rows, sent, before_publish)


def test_messages_published_while_running_arrive_at_once(
    channel: Channel, pubsub_publisher: pubsub_v1.PublisherClient, tmp_path: Path
) -> None:
    """The reader's held pull returns as soon as a message is published: no 30 s stall."""
    observed = tmp_path / "observed.jsonl"
    result = _read_pipeline(channel.subscription, observed).run()
    latencies, sent = [], {}
    try:
        time.sleep(2)  # the reader is now waiting in an empty pull
        for n in range(5):
            published = time.monotonic()
            sent.update(_publish(pubsub_publisher, channel.topic, 1, first=n))
            rows = _wait_for(observed, n + 1, timeout_s=10)
            assert len(rows) == n + 1, f"message {n} not there after 10 s"
            latencies.append(max(row["observed_at"] for row in rows) - published)
    finally:
        _stop(result, pubsub_publisher, channel.topic)
    shown = ", ".join(f"{seconds * 1000:.0f} ms" for seconds in latencies)
    print(f"\npubsub read: publish to pipeline {shown}")
    assert sorted(row["message_id"] for row in _observed(observed)) == sorted(sent)
    assert max(latencies) < 5
