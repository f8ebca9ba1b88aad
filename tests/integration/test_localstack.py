"""The local stack against the real emulators: clients reach them, and stop leaves nothing."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery, storage

from pipeline import localstack


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _port(endpoint: str) -> int:
    port = urlsplit(endpoint).port
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


def test_environment_names_both_endpoints_and_local_credentials(
    local_stack: localstack.LocalStack,
) -> None:
    variables = localstack.environment(local_stack)
    assert Path(variables.pop("GOOGLE_APPLICATION_CREDENTIALS")).is_file()
    assert variables == {
        "STORAGE_EMULATOR_HOST": local_stack.storage_endpoint,
        "OPENTRACK_BIGQUERY_ENDPOINT": local_stack.bigquery_endpoint,
    }
    assert os.environ["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")


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
    tmp_path: Path, local_stack_install_dir: Path
) -> None:
    state_dir = tmp_path / "stack"
    stack = localstack.start(state_dir, install_dir=local_stack_install_dir)
    try:
        assert localstack.status(state_dir) == stack
        ports = [_port(stack.bigquery_endpoint), _port(stack.storage_endpoint)]
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
