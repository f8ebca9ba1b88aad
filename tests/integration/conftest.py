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
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, pubsub_v1, storage

from pipeline import localstack


@pytest.fixture(scope="session")
def local_stack_install_dir() -> Path:
    return localstack.default_state_dir()


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
        try:
            yield stack
        finally:
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
