"""The local stack against the real emulators: clients reach them, and stop leaves nothing."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery, pubsub_v1, storage

from pipeline import localstack
from pipeline.commands import local as local_cli


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _port(endpoint: str) -> int:
    """Of http://host:port, or of host:port (PUBSUB_EMULATOR_HOST has no scheme)."""
    port = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").port
    assert port is not None
    return port


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _process_gone(pid: int) -> bool:
    """Exited and reaped: stop() waits for the servers this process started, no zombies."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_bigquery_creates_lists_and_reads_a_dataset(bq_client: bigquery.Client) -> None:
    name = _unique("it_dataset")
    dataset = bigquery.Dataset(f"{bq_client.project}.{name}")
    dataset.description = "integration test"
    dataset.labels = {"suite": "localstack"}
    bq_client.create_dataset(dataset)
    try:
        assert name in {item.dataset_id for item in bq_client.list_datasets()}
        fetched = bq_client.get_dataset(name)
        assert fetched.description == "integration test"
        assert fetched.labels == {"suite": "localstack"}
    finally:
        bq_client.delete_dataset(name, delete_contents=True)
    with pytest.raises(NotFound):
        bq_client.get_dataset(name)


def test_bigquery_round_trips_rows(bq_client: bigquery.Client) -> None:
    name = _unique("it_rows")
    bq_client.create_dataset(name)
    try:
        table = bq_client.create_table(
            bigquery.Table(
                f"{bq_client.project}.{name}.events",
                schema=[
                    bigquery.SchemaField("id", "STRING"),
                    bigquery.SchemaField("timestamp", "TIMESTAMP"),
                ],
            )
        )
        rows = [{"id": "m-1", "timestamp": "2026-11-01T10:00:00.000000Z"}, {"id": "m-2"}]
        assert bq_client.insert_rows_json(table, rows) == []
        query = f"SELECT id FROM `{bq_client.project}.{name}.events` ORDER BY id"
        assert [row.id for row in bq_client.query(query).result()] == ["m-1", "m-2"]
    finally:
        bq_client.delete_dataset(name, delete_contents=True)


def test_storage_round_trips_an_object(gcs_client: storage.Client) -> None:
    bucket = gcs_client.create_bucket(_unique("it-bucket").replace("_", "-"))
    try:
        blob = bucket.blob("events/part-0.jsonl")
        blob.upload_from_string(b'{"type":"track"}\n', content_type="application/x-ndjson")
        assert [b.name for b in gcs_client.list_blobs(bucket, prefix="events/")] == [blob.name]
        assert bucket.blob(blob.name).download_as_bytes() == b'{"type":"track"}\n'
    finally:
        bucket.delete(force=True)


def test_bigquery_loads_gcs_files_by_wildcard(
    bq_client: bigquery.Client, gcs_client: storage.Client
) -> None:
    """A load job reads what was uploaded to the GCS emulator: same files, one root."""
    bucket = gcs_client.create_bucket(_unique("it-load").replace("_", "-"))
    dataset = _unique("it_load")
    try:
        bucket.blob("events/part-0.jsonl").upload_from_string(
            b'{"id":"e-1","n":1}\n{"id":"e-2","n":2}\n', content_type="application/x-ndjson"
        )
        bucket.blob("events/part-1.jsonl").upload_from_string(
            b'{"id":"e-3","n":3}\n', content_type="application/x-ndjson"
        )
        bucket.blob("events/notes.txt").upload_from_string(b"not matched by the wildcard\n")
        bucket.blob("other/part-0.jsonl").upload_from_string(b'{"id":"x-1","n":9}\n')
        schema = [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("n", "INTEGER")]
        bq_client.create_dataset(dataset)
        table = bq_client.create_table(
            bigquery.Table(f"{bq_client.project}.{dataset}.events", schema=schema)
        )
        job = bq_client.load_table_from_uri(
            f"gs://{bucket.name}/events/*.jsonl",
            table,
            job_config=bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                schema=schema,
            ),
        )
        job.result(timeout=30)
        query = f"SELECT id, n FROM `{table.project}.{dataset}.events` ORDER BY id"
        rows = [(row.id, row.n) for row in bq_client.query(query).result()]
        assert rows == [("e-1", 1), ("e-2", 2), ("e-3", 3)]
    finally:
        bq_client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
        bucket.delete(force=True)


def _pull(
    subscriber: pubsub_v1.SubscriberClient, subscription: str, count: int
) -> list[pubsub_v1.types.ReceivedMessage]:
    """Pull until ``count`` messages came: one pull may return fewer than there are."""
    received: list[pubsub_v1.types.ReceivedMessage] = []
    deadline = time.monotonic() + 30
    while len(received) < count and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=count, timeout=30)
        received.extend(response.received_messages)
    return received


def _nothing_left(subscriber: pubsub_v1.SubscriberClient, subscription: str) -> bool:
    """return_immediately (deprecated, still honoured by the emulator): without it the
    emulator holds an empty pull for ~30 s."""
    response = subscriber.pull(
        subscription=subscription, max_messages=10, return_immediately=True, timeout=30
    )
    return not response.received_messages


@pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated")
def test_pubsub_round_trips_messages_with_attributes(
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    local_stack: localstack.LocalStack,
) -> None:
    topic = pubsub_publisher.topic_path(local_stack.project, _unique("it-topic"))
    subscription = pubsub_subscriber.subscription_path(local_stack.project, _unique("it-sub"))
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)
    try:
        before = time.time()
        message_id = pubsub_publisher.publish(
            topic, b'{"type":"track"}', source="web", tenant="a"
        ).result(timeout=30)
        [received] = _pull(pubsub_subscriber, subscription, 1)
        message = received.message
        assert message.data == b'{"type":"track"}'
        assert dict(message.attributes) == {"source": "web", "tenant": "a"}
        assert message.message_id == message_id
        assert before - 1 <= message.publish_time.timestamp() <= time.time() + 1
        # Not acknowledged (deadline 0 = nack): delivered again, at once.
        pubsub_subscriber.modify_ack_deadline(
            subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
        )
        [again] = _pull(pubsub_subscriber, subscription, 1)
        assert again.message.message_id == message_id
        pubsub_subscriber.acknowledge(subscription=subscription, ack_ids=[again.ack_id])
        assert _nothing_left(pubsub_subscriber, subscription)
    finally:
        pubsub_subscriber.delete_subscription(subscription=subscription)
        pubsub_publisher.delete_topic(topic=topic)
    with pytest.raises(NotFound):
        pubsub_publisher.get_topic(topic=topic)


def test_environment_names_every_endpoint_and_local_credentials(
    local_stack: localstack.LocalStack, pubsub_emulator: str
) -> None:
    variables = localstack.environment(local_stack)
    assert Path(variables.pop("GOOGLE_APPLICATION_CREDENTIALS")).is_file()
    assert variables == {
        "STORAGE_EMULATOR_HOST": local_stack.storage_endpoint,
        "OPENTRACK_BIGQUERY_PROJECT": local_stack.project,
        "OPENTRACK_BIGQUERY_ENDPOINT": local_stack.bigquery_endpoint,
        "OPENTRACK_BIGQUERY_STORAGE_ENDPOINT": local_stack.bigquery_grpc_endpoint,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator,
    }
    assert os.environ["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert os.environ["PUBSUB_EMULATOR_HOST"].startswith("127.0.0.1:")  # no scheme


def test_local_credentials_let_beam_find_credentials_without_retrying() -> None:
    import json
    import time

    import google.auth

    path = localstack.local_credentials_file()
    assert json.loads(path.read_text())["type"] == "authorized_user"
    started = time.monotonic()
    credentials, _ = google.auth.load_credentials_from_file(str(path))
    assert credentials.valid  # a token that needs no refresh, so no network
    assert time.monotonic() - started < 5


def test_status_reports_the_running_stack(
    local_stack: localstack.LocalStack, local_stack_state_dir: Path
) -> None:
    assert localstack.status(local_stack_state_dir) == local_stack


def test_stop_ends_the_processes_and_frees_the_ports(
    tmp_path: Path, local_stack_install_dir: Path, pubsub_emulator: str
) -> None:
    state_dir = tmp_path / "stack"
    stack = localstack.start(state_dir, install_dir=local_stack_install_dir)
    try:
        assert localstack.status(state_dir) == stack
        assert stack.pubsub_endpoint and len(stack.pids) == 3  # bigquery, storage, pubsub
        ports = [
            _port(stack.bigquery_endpoint),
            _port(stack.storage_endpoint),
            _port(stack.pubsub_endpoint),
        ]
    finally:
        assert localstack.stop(state_dir)
    assert all(_process_gone(pid) for pid in stack.pids)
    assert all(_refuses(port) for port in ports)
    assert not (state_dir / localstack.STATE_FILE).exists()
    assert localstack.status(state_dir) is None
    assert localstack.stop(state_dir) is False  # nothing left to stop: no error


def test_running_stops_the_stack_when_the_block_fails(
    tmp_path: Path, local_stack_install_dir: Path
) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with localstack.running(tmp_path / "stack", install_dir=local_stack_install_dir) as stack:
            raise RuntimeError("boom")
    assert all(_process_gone(pid) for pid in stack.pids)
    assert _refuses(_port(stack.bigquery_endpoint))


def test_pubsub_emulator_command_runs_the_jar_on_loopback() -> None:
    command = localstack.pubsub_emulator_command(8085)
    assert Path(command[0]).name == "java"
    assert command[1] == "-jar" and Path(command[2]).is_file()
    assert command[3:] == ["--host=127.0.0.1", "--port=8085"]


def test_pubsub_emulator_command_says_java_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java
    with pytest.raises(localstack.LocalStackError, match="`java` is not on PATH"):
        localstack.pubsub_emulator_command(8085)


def test_without_the_pubsub_jar_bigquery_and_gcs_still_start_and_say_so(
    tmp_path: Path,
    local_stack_install_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "no-such-emulator.jar"
    monkeypatch.setenv("OPENTRACK_PUBSUB_EMULATOR_JAR", str(missing))
    state_dir = tmp_path / "stack"
    stack = localstack.start(state_dir, install_dir=local_stack_install_dir)
    try:
        assert stack.pubsub_endpoint == ""
        assert str(missing) in stack.pubsub_unavailable
        assert len(stack.pids) == 2
        assert localstack.status(state_dir) == stack
        assert "PUBSUB_EMULATOR_HOST" not in localstack.environment(stack)
        assert local_cli.main(["status", "--state-dir", str(state_dir)]) == 0
        output = capsys.readouterr().out
        assert f"pubsub    UNAVAILABLE: no Pub/Sub emulator jar matches {missing}" in output
        assert "# PUBSUB_EMULATOR_HOST not set: Pub/Sub emulator unavailable" in output
    finally:
        assert localstack.stop(state_dir)
    assert all(_process_gone(pid) for pid in stack.pids)


def test_a_pubsub_emulator_that_dies_fails_the_start_with_its_log(
    tmp_path: Path, local_stack_install_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "cloud-pubsub-emulator-0.0.0-all.jar"
    broken.write_text("not a jar")
    monkeypatch.setenv("OPENTRACK_PUBSUB_EMULATOR_JAR", str(broken))
    state_dir = tmp_path / "stack"
    with pytest.raises(localstack.LocalStackError, match=r"(?s)pubsub exited.*corrupt jarfile"):
        localstack.start(state_dir, install_dir=local_stack_install_dir)
    assert not (state_dir / localstack.STATE_FILE).exists()  # BigQuery and GCS stopped too
