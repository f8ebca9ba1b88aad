"""The real local stack for integration tests: one per session, fresh data, shared install.

The BigQuery emulator's virtualenv is built once in <repo>/.local-stack (or
$OPENTRACK_LOCAL_STATE), the same install ``opentrack local up`` uses, so only the first
session on a machine pays for it. Each session's state, logs and data live in a temporary
directory: a stack started by ``opentrack local up`` is left alone.

Pub/Sub tests depend on ``pubsub_emulator`` (directly or through the client fixtures): on a
machine without the emulator's jar or Java they fail with the reason, they never skip, so a
missing emulator cannot pass for a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, pubsub_v1, storage

from pipeline import localstack


@pytest.fixture(scope="session")
def local_stack_install_dir() -> Path:
    return localstack.default_state_dir()


_RUNNING: list[localstack.LocalStack] = []  # the session's stack, once started


def _datasets(stack: localstack.LocalStack) -> set[str]:
    client = _client(stack)
    try:
        return {item.dataset_id for item in client.list_datasets()}
    finally:
        client.close()


def _client(stack: localstack.LocalStack) -> bigquery.Client:
    return bigquery.Client(
        project=stack.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": stack.bigquery_endpoint},
    )


@pytest.fixture(scope="module", autouse=True)
def _drop_datasets_of_the_module() -> Iterator[None]:
    """Each module's datasets are dropped when it ends. The emulator answers every call
    after a scan of its catalog, so a session that kept them all slowed down as it went
    (a full suite: the emulator pinned at 100 % CPU from the middle on)."""
    before = _datasets(_RUNNING[0]) if _RUNNING else set()
    yield
    if not _RUNNING:
        return
    stack = _RUNNING[0]
    client = _client(stack)
    try:
        for dataset in _datasets(stack) - before:
            client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def local_stack_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-stack")


@pytest.fixture(scope="session")
def local_stack(
    local_stack_state_dir: Path, local_stack_install_dir: Path
) -> Iterator[localstack.LocalStack]:
    """The emulators, with their client variables set in os.environ for the session."""
    with localstack.running(local_stack_state_dir, install_dir=local_stack_install_dir) as stack:
        variables = localstack.environment(stack)
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        _RUNNING.append(stack)
        try:
            yield stack
        finally:
            _RUNNING.clear()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="session")
def bq_client(local_stack: localstack.LocalStack) -> Iterator[bigquery.Client]:
    client = bigquery.Client(
        project=local_stack.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": local_stack.bigquery_endpoint},
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def gcs_client(local_stack: localstack.LocalStack) -> Iterator[storage.Client]:
    """Finds the emulator through STORAGE_EMULATOR_HOST, which local_stack sets."""
    client = storage.Client(project=local_stack.project, credentials=AnonymousCredentials())
    yield client
    client.close()


@pytest.fixture(scope="session")
def pubsub_emulator(local_stack: localstack.LocalStack) -> str:
    """host:port of the Pub/Sub emulator, which PUBSUB_EMULATOR_HOST names for every client."""
    if not local_stack.pubsub_endpoint:
        pytest.fail(
            f"Pub/Sub emulator unavailable: {local_stack.pubsub_unavailable}", pytrace=False
        )
    assert os.environ["PUBSUB_EMULATOR_HOST"] == local_stack.pubsub_endpoint
    return local_stack.pubsub_endpoint


@pytest.fixture(scope="session")
def pubsub_publisher(pubsub_emulator: str) -> Iterator[pubsub_v1.PublisherClient]:
    """Built after PUBSUB_EMULATOR_HOST is set: the client reads it once, in its constructor."""
    client = pubsub_v1.PublisherClient()
    yield client
    client.stop()
    client.transport.close()


@pytest.fixture(scope="session")
def pubsub_subscriber(pubsub_emulator: str) -> Iterator[pubsub_v1.SubscriberClient]:
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 server (moto's server mode) on 127.0.0.1; its endpoint URL."""
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with ExitStack() as stack:
        try:
            endpoint = stack.enter_context(localstack.s3_server(log))
        except localstack.LocalStackError as error:
            pytest.fail(str(error))
        yield endpoint
