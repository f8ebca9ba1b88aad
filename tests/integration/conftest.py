"""The real local stack for integration tests: one per session, fresh data, shared install.

The BigQuery emulator's virtualenv is built once in <repo>/.local-stack (or
$OPENTRACK_LOCAL_STATE), the same install ``opentrack local up`` uses, so only the first
session on a machine pays for it. Each session's state, logs and data live in a temporary
directory: a stack started by ``opentrack local up`` is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

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
    """Both emulators, with their client variables set in os.environ for the session."""
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
