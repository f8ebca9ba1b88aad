"""The local stack: real BigQuery, GCS and Pub/Sub emulators on 127.0.0.1 (its command is
``pipeline.commands.local``).

BigQuery is ``local-bigquery`` (DuckDB-backed). It needs Python 3.13, so it lives in its
own virtualenv, ``<install dir>/bqvenv``, built from ``requirements.txt`` (this package's).
DuckDB has no setting for its extension directory other than ``$HOME/.duckdb``, so the
extensions are installed from their wheels' files under ``<install dir>/home`` and the server
always runs with that HOME: this is what makes it work offline. GCS is ``gcp-storage-emulator``,
installed in the project's own virtualenv (the ``local`` extra). Pub/Sub is Google's own
emulator, the jar of the machine image's ``google-cloud-cli-pubsub-emulator`` package, run
with ``java -jar`` (no gcloud wrapper, no Python). Without the jar or ``java`` the stack still
starts BigQuery and GCS and says why Pub/Sub is unavailable (``pubsub_unavailable``).

Layout of a state dir: ``state.json`` (pids, ports, endpoints), ``logs/``, ``bqdata/`` (the
BigQuery data, kept across ``down``/``up``) and ``gcs/`` (the GCS emulator's ``--data-dir``:
objects are files ``gcs/.cloudstorage/<bucket>/<object name>``, next to its ``.meta`` index and
``_softdelete/``; emptied on every ``up``, so GCS starts empty as it did in memory, and left on
disk by ``down``). The BigQuery emulator runs with ``GCS_LOCAL_ROOT=<state dir>/gcs/.cloudstorage``,
so its load jobs read ``gs://bucket/path`` URIs, wildcards included, straight from those files:
whatever is uploaded to the GCS emulator can be loaded. (Its extract jobs write there too, but
the GCS emulator does not list files it did not write itself.) The install dir (``bqvenv``
and ``home``) is the state dir unless given separately, so test sessions can reuse one
install with fresh data.

Every server runs in its own session (process group), so ``stop`` reaches anything they
spawn, and ``stop`` works from another process: everything it needs is in ``state.json``.

Modules: ``processes`` (spawning, probing and stopping servers), one per emulator
(``bigquery``, ``gcs``, ``pubsub``; ``s3``, a moto S3 server for tests, is not in the stack)
and ``stack`` (the three together, state.json). Their public names are re-exported here.
"""

from __future__ import annotations

from pipeline.localstack.bigquery import REQUIREMENTS, ensure_bigquery_emulator, find_python313
from pipeline.localstack.gcs import GCS_DIR, GCS_STORAGE_DIR
from pipeline.localstack.processes import (
    READY_TIMEOUT_S,
    STOP_GRACE_S,
    LocalStackError,
    free_port,
)
from pipeline.localstack.pubsub import (
    PUBSUB_JAR_GLOB,
    PUBSUB_READY_TIMEOUT_S,
    pubsub_emulator_command,
)
from pipeline.localstack.s3 import s3_server
from pipeline.localstack.stack import (
    DEFAULT_PROJECT,
    LOCAL_CREDENTIALS,
    REPO,
    STATE_FILE,
    LocalStack,
    default_state_dir,
    environment,
    local_credentials_file,
    restart_bigquery,
    running,
    start,
    status,
    stop,
)

__all__ = [
    "DEFAULT_PROJECT",
    "GCS_DIR",
    "GCS_STORAGE_DIR",
    "LOCAL_CREDENTIALS",
    "PUBSUB_JAR_GLOB",
    "PUBSUB_READY_TIMEOUT_S",
    "READY_TIMEOUT_S",
    "REPO",
    "REQUIREMENTS",
    "STATE_FILE",
    "STOP_GRACE_S",
    "LocalStack",
    "LocalStackError",
    "default_state_dir",
    "ensure_bigquery_emulator",
    "environment",
    "find_python313",
    "free_port",
    "local_credentials_file",
    "pubsub_emulator_command",
    "restart_bigquery",
    "running",
    "s3_server",
    "start",
    "status",
    "stop",
]
