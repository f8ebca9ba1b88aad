"""The stack of the three emulators: start, stop, status and restart_bigquery through its
state.json, and the environment (variables, credentials) clients need to reach it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.localstack import bigquery, gcs, pubsub
from pipeline.localstack.bigquery import ensure_bigquery_emulator, spawn_bigquery
from pipeline.localstack.gcs import GCS_DIR, GCS_STORAGE_DIR, spawn_storage, storage_executable
from pipeline.localstack.processes import (
    LocalStackError,
    alive,
    free_ports,
    http_status,
    terminate,
    wait_ready,
)
from pipeline.localstack.pubsub import pubsub_emulator_command, spawn_pubsub

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROJECT = "test-project"
STATE_FILE = "state.json"
# What /proc/<pid>/cmdline of each server contains, by its key in state.json.
_MARKERS = {server.NAME: server.MARKER for server in (bigquery, gcs, pubsub)}
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalStack:
    """Where the running emulators answer."""

    bigquery_endpoint: str  # http://127.0.0.1:P (REST)
    storage_endpoint: str  # http://127.0.0.1:Q
    project: str
    pids: tuple[int, ...]  # (bigquery, storage[, pubsub]); each is its process group id too
    bigquery_grpc_endpoint: str = ""  # 127.0.0.1:G (BigQuery Storage API)
    pubsub_endpoint: str = ""  # 127.0.0.1:R, no scheme (PUBSUB_EMULATOR_HOST); "" if unavailable
    pubsub_unavailable: str = ""  # why there is no Pub/Sub emulator; "" when there is one


def default_state_dir() -> Path:
    return Path(os.environ.get("OPENTRACK_LOCAL_STATE") or REPO / ".local-stack")


# Application Default Credentials holding a pre-issued, never-expiring token for the
# emulators (which ignore tokens). Without credentials Beam's GCS IO retries the ADC
# lookup for ~25 s per process before going anonymous; with this documented ADC file it
# finds credentials at once and needs no network to use them.
LOCAL_CREDENTIALS = {
    "type": "authorized_user",
    "client_id": "opentrack-local-stack",
    "client_secret": "opentrack-local-stack",
    "refresh_token": "opentrack-local-stack",
    "token": "opentrack-local-stack",
    "expiry": "2999-01-01T00:00:00Z",
}


def local_credentials_file() -> Path:
    path = Path(tempfile.gettempdir()) / "opentrack-local-stack-credentials.json"
    text = json.dumps(LOCAL_CREDENTIALS)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def environment(stack: LocalStack) -> dict[str, str]:
    """Variables clients need. GCS wants the scheme, PUBSUB_EMULATOR_HOST must not have one.

    Without a Pub/Sub emulator PUBSUB_EMULATOR_HOST is left out (set empty, it would send
    clients to the real service just the same): callers check ``pubsub_endpoint`` first.
    """
    variables = {
        "STORAGE_EMULATOR_HOST": stack.storage_endpoint,
        "OPENTRACK_BIGQUERY_PROJECT": stack.project,
        "OPENTRACK_BIGQUERY_ENDPOINT": stack.bigquery_endpoint,
        "OPENTRACK_BIGQUERY_STORAGE_ENDPOINT": stack.bigquery_grpc_endpoint,
        "GOOGLE_APPLICATION_CREDENTIALS": str(local_credentials_file()),
    }
    if stack.pubsub_endpoint:
        variables["PUBSUB_EMULATOR_HOST"] = stack.pubsub_endpoint
    return variables


# --- state ------------------------------------------------------------------------------


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise LocalStackError(f"unreadable {state_dir / STATE_FILE}: {error}") from error
    return state


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Atomically: another process may read it at any time (status, down)."""
    partial = state_dir / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, state_dir / STATE_FILE)


def _processes(state: dict[str, Any]) -> dict[str, int]:
    """The servers that were started (an unavailable Pub/Sub has no pid)."""
    return {
        name: int(state[name]["pid"])
        for name in _MARKERS
        if isinstance(state.get(name), dict) and "pid" in state[name]
    }


def _stack(state: dict[str, Any]) -> LocalStack:
    bq, storage = state["bigquery"], state["storage"]
    ps = state.get("pubsub") or {"unavailable": "not started (state.json predates Pub/Sub)"}
    pids = [int(bq["pid"]), int(storage["pid"])]
    if "pid" in ps:
        pids.append(int(ps["pid"]))
    return LocalStack(
        bigquery_endpoint=bq["endpoint"],
        storage_endpoint=storage["endpoint"],
        project=state["project"],
        pids=tuple(pids),
        bigquery_grpc_endpoint=f"127.0.0.1:{bq['grpc_port']}",
        pubsub_endpoint=ps.get("endpoint", ""),
        pubsub_unavailable=ps.get("unavailable", ""),
    )


def _gcs_root(state: dict[str, Any], state_dir: Path) -> Path:
    """Where the BigQuery emulator finds the GCS emulator's buckets (a state.json written
    before GCS was on disk does not say: its default place)."""
    return Path(state.get("gcs_local_root") or state_dir / GCS_DIR / GCS_STORAGE_DIR)


# --- the API ----------------------------------------------------------------------------


def start(
    state_dir: Path, project: str = DEFAULT_PROJECT, *, install_dir: Path | None = None
) -> LocalStack:
    """Install if needed, start the servers on free loopback ports, wait until they answer.

    Without the Pub/Sub emulator's jar or ``java``, BigQuery and GCS still start and the
    stack's ``pubsub_unavailable`` says why (also logged as a warning). A Pub/Sub emulator
    that is there but dies or never answers fails the start like the other servers.

    ``install_dir`` (default: ``state_dir``) holds the BigQuery emulator's venv and HOME;
    everything of this run (state.json, logs, data) goes to ``state_dir``. On any failure,
    interrupts included, whatever was started is stopped before the error propagates.
    """
    state_dir = state_dir.resolve()
    install_dir = (install_dir or state_dir).resolve()
    if status(state_dir) is not None:
        raise LocalStackError(f"already running ({state_dir / STATE_FILE}); stop it first")
    stop(state_dir)  # leftovers of a run that died without `down`
    executable = ensure_bigquery_emulator(install_dir)
    gcs_executable = storage_executable()
    logs, data, gcs_dir = state_dir / "logs", state_dir / "bqdata", state_dir / GCS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(gcs_dir, ignore_errors=True)  # every `up` starts with no buckets
    gcs_root = gcs_dir / GCS_STORAGE_DIR
    gcs_root.mkdir(parents=True)
    bq_port, grpc_port, gcs_port, pubsub_port = free_ports(4)
    bigquery_endpoint = f"http://127.0.0.1:{bq_port}"
    storage_endpoint = f"http://127.0.0.1:{gcs_port}"
    pubsub_endpoint = f"127.0.0.1:{pubsub_port}"
    try:
        pubsub_command: list[str] | None = pubsub_emulator_command(pubsub_port)
        pubsub_state: dict[str, Any] = {
            "port": pubsub_port,
            "endpoint": pubsub_endpoint,
            "log": str(logs / "pubsub.log"),
        }
    except LocalStackError as missing:
        pubsub_command, pubsub_state = None, {"unavailable": str(missing)}
        _LOG.warning("Pub/Sub emulator unavailable: %s", missing)
    started = time.monotonic()
    spawned: dict[str, int] = {}
    try:
        spawned["storage"] = spawn_storage(
            gcs_executable, gcs_dir, gcs_port, logs / "storage.log", state_dir
        )
        spawned["bigquery"] = spawn_bigquery(
            executable, bq_port, grpc_port, project, data, gcs_root, install_dir, state_dir
        )
        if pubsub_command is not None:
            spawned["pubsub"] = spawn_pubsub(pubsub_command, logs / "pubsub.log", state_dir)
            pubsub_state["pid"] = spawned["pubsub"]
        state: dict[str, Any] = {
            "project": project,
            "bigquery": {
                "pid": spawned["bigquery"],
                "port": bq_port,
                "grpc_port": grpc_port,
                "endpoint": bigquery_endpoint,
                "log": str(logs / "bigquery.log"),
            },
            "storage": {
                "pid": spawned["storage"],
                "port": gcs_port,
                "endpoint": storage_endpoint,
                "log": str(logs / "storage.log"),
            },
            "pubsub": pubsub_state,
            "install_dir": str(install_dir),
            "data_dir": str(data),
            "gcs_local_root": str(gcs_root),
        }
        _write_state(state_dir, state)
        probes = [
            gcs.probe(spawned["storage"], storage_endpoint, logs / "storage.log"),
            bigquery.probe(spawned["bigquery"], bigquery_endpoint, project, logs / "bigquery.log"),
        ]
        if "pubsub" in spawned:
            probes.append(pubsub.probe(spawned["pubsub"], pubsub_endpoint, logs / "pubsub.log"))
        ready = wait_ready(probes, started)
        for name, seconds in ready.items():
            state[name]["ready_s"] = round(seconds, 2)
        _write_state(state_dir, state)
    except BaseException:
        terminate(spawned, _MARKERS)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    _LOG.info(
        "local stack ready in %.1f s (%s)",
        time.monotonic() - started,
        ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ready.items()),
    )
    return _stack(state)


def stop(state_dir: Path) -> bool:
    """Stop what state.json names; False when nothing was recorded. Safe to call twice."""
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if state is None:
        return False
    terminate(_processes(state), _MARKERS)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def restart_bigquery(state_dir: Path) -> LocalStack:
    """Stop the BigQuery emulator and start it again on the same ports and data (its own,
    and the GCS emulator's files it loads from).

    For fault drills: clients see refused connections while it is down and find
    their datasets and tables again once it answers.
    """
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if state is None:
        raise LocalStackError(f"no stack recorded in {state_dir}")
    recorded = state["bigquery"]
    terminate({"bigquery": int(recorded["pid"])}, _MARKERS)
    install_dir = Path(state["install_dir"])
    started = time.monotonic()
    pid = spawn_bigquery(
        ensure_bigquery_emulator(install_dir), int(recorded["port"]), int(recorded["grpc_port"]),
        state["project"], Path(state["data_dir"]), _gcs_root(state, state_dir), install_dir,
        state_dir,
    )  # fmt: skip
    recorded["pid"] = pid
    _write_state(state_dir, state)
    wait_ready(
        [bigquery.probe(pid, recorded["endpoint"], state["project"], Path(recorded["log"]))],
        started,
    )
    return _stack(state)


def status(state_dir: Path) -> LocalStack | None:
    """The stack, if its processes are alive and every endpoint answers."""
    state = _read_state(state_dir.resolve())
    if state is None:
        return None
    if not all(alive(pid, _MARKERS[name]) for name, pid in _processes(state).items()):
        return None
    stack = _stack(state)
    if http_status(bigquery.datasets_url(stack.bigquery_endpoint, stack.project)) != 200:
        return None
    if not gcs.answers(stack.storage_endpoint):
        return None
    if stack.pubsub_endpoint and not pubsub.answers(stack.pubsub_endpoint):
        return None
    return stack


@contextmanager
def running(
    state_dir: Path, project: str = DEFAULT_PROJECT, *, install_dir: Path | None = None
) -> Iterator[LocalStack]:
    """A stack for the duration of a block; stopped however the block ends."""
    stack = start(state_dir, project, install_dir=install_dir)
    try:
        yield stack
    finally:
        stop(state_dir)
