"""The local stack: real BigQuery, GCS and Pub/Sub emulators on 127.0.0.1 (its command is
``pipeline.commands.local``).

BigQuery is ``local-bigquery`` (DuckDB-backed). It needs Python 3.13, so it lives in its
own virtualenv, ``<install dir>/bqvenv``, built from ``localstack_requirements.txt``. DuckDB
has no setting for its extension directory other than ``$HOME/.duckdb``, so the extensions
are installed from their wheels' files under ``<install dir>/home`` and the server always
runs with that HOME: this is what makes it work offline. GCS is ``gcp-storage-emulator``,
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
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).with_name("localstack_requirements.txt")
DEFAULT_PROJECT = "test-project"
STATE_FILE = "state.json"
READY_TIMEOUT_S = 60.0
# The JVM answers in 1.3-2.7 s on an idle 2-core machine; next to BigQuery's start and a busy test
# session it can take several times that, and a slow start is no reason to give up.
PUBSUB_READY_TIMEOUT_S = 120.0
# Where the machine image's google-cloud-cli-pubsub-emulator package puts the jar (the version
# is in its name); OPENTRACK_PUBSUB_EMULATOR_JAR overrides it (a path or a glob).
PUBSUB_JAR_GLOB = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"
)
STOP_GRACE_S = 10.0
# The GCS emulator's --data-dir, under the state dir, and the directory under it holding one
# directory per bucket (its STORAGE_DIR, pinned so a caller's variable cannot move it).
GCS_DIR = "gcs"
GCS_STORAGE_DIR = ".cloudstorage"
# Pins named duckdb-extension-<name> are also installed into DuckDB (see the requirements).
_EXTENSION_PREFIX = "duckdb-extension-"
_PYTHON_FALLBACK = "/root/.pyenv/versions/3.13.0/bin/python3.13"
# What /proc/<pid>/cmdline of each server contains: a stale state.json (after a reboot)
# must never make `down` signal an unrelated process that got the same pid.
_MARKERS = {
    "bigquery": "local-bigquery",
    "storage": "gcp-storage-emulator",
    "pubsub": "cloud-pubsub-emulator",
}
# Settings local-bigquery reads from the environment (pydantic-settings, any case), and
# variables of the caller's virtualenv that would break a Python 3.13 one. Not inherited:
# the server must be configured by its flags only.
_SCRUBBED_ENV = {
    "BIGQUERY_PORT", "BIGQUERY_HOST", "GRPC_PORT", "DATA_DIR", "DEFAULT_PROJECT_ID",
    "DEFAULT_DATASET_ID", "CALLER", "GROUPS", "POSTGRES_CONNECTION_ID", "GCS_LOCAL_ROOT",
    "STORAGE_EMULATOR_HOST", "POSTGRES_URI",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__",
}  # fmt: skip
_LOG = logging.getLogger(__name__)
# Servers started by this process, so stop() can reap them (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Never go through an HTTP proxy from the environment to reach 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalStackError(RuntimeError):
    """The local stack could not be installed, started or reached."""


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


# --- Python 3.13 and the BigQuery emulator's virtualenv ---------------------------------


def _is_python313(executable: str) -> bool:
    """Runs it: a pyenv shim is on PATH even when 3.13 is not the selected version."""
    check = (
        "import sys, sysconfig, venv, ensurepip; "
        "sys.exit(sys.version_info[:2] != (3, 13) "
        "or bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
    )
    try:
        result = subprocess.run(
            [executable, "-c", check], capture_output=True, timeout=30, env=_clean_env()
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _pyenv_pythons() -> list[str]:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return []
    try:
        root = subprocess.run(
            [pyenv, "root"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []

    def version(python: Path) -> list[int]:
        return [int(number) for number in re.findall(r"\d+", python.parent.parent.name)]

    found = Path(root).glob("versions/3.13*/bin/python3.13")
    return [str(path) for path in sorted(found, key=version, reverse=True)]


def find_python313() -> str:
    """OPENTRACK_PYTHON313, else python3.13 on PATH, else pyenv's, else the machine image's."""
    explicit = os.environ.get("OPENTRACK_PYTHON313")
    if explicit:
        if _is_python313(explicit):
            return explicit
        raise LocalStackError(
            f"OPENTRACK_PYTHON313={explicit} is not a working Python 3.13 with venv/ensurepip"
        )
    on_path = shutil.which("python3.13")
    candidates = ([on_path] if on_path else []) + _pyenv_pythons() + [_PYTHON_FALLBACK]
    for candidate in dict.fromkeys(candidates):
        if _is_python313(candidate):
            return candidate
    raise LocalStackError(
        "the BigQuery emulator needs Python 3.13 and none was found (tried: "
        + ", ".join(dict.fromkeys(candidates))
        + "); install it (`pyenv install 3.13`) or set OPENTRACK_PYTHON313"
    )


def _pins() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line]


def _requirements_key() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _redact(text: str) -> str:
    """Hide user:password in URLs (index URLs) before showing tool output."""
    return re.sub(r"(://)[^/\s@]+@", r"\1***@", text)


def _run(command: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> str:
    """Run quietly; show the whole output only when it fails."""
    result = subprocess.run(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    if result.returncode != 0:
        raise LocalStackError(
            f"{what} failed (exit {result.returncode}):\n{_redact(result.stdout)}"
        )
    return result.stdout


def _check_dependencies(python: Path) -> None:
    """pip check, accepting only the known duckdb>=2.0.0 complaint: the lock must be complete."""
    result = subprocess.run(
        [str(python), "-m", "pip", "check", "--disable-pip-version-check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
    )
    problems = [
        line
        for line in result.stdout.splitlines()
        if line.strip()
        and line != "No broken requirements found."
        and not (line.startswith("local-bigquery ") and "requirement duckdb" in line)
    ]
    if problems:
        raise LocalStackError(
            f"{REQUIREMENTS.name} is incomplete or inconsistent (pip check):\n"
            + "\n".join(problems)
        )


_INSTALL_EXTENSIONS = """
import importlib, pathlib, sys, duckdb
con = duckdb.connect()
for name in sys.argv[1:]:
    package = pathlib.Path(importlib.import_module("duckdb_extension_" + name).__file__).parent
    files = sorted(package.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
    if not files:
        sys.exit(f"no {name} extension for DuckDB {duckdb.__version__} in {package}")
    con.execute("FORCE INSTALL '" + str(files[0]).replace("'", "''") + "'")
    con.execute("LOAD " + name)
"""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time (two test sessions, or `up` during a test run)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_bigquery_emulator(state_dir: Path) -> Path:
    """Build the emulator's virtualenv once per version of the requirements; return its executable.

    The marker is written last and holds the requirements' hash, so an interrupted install
    or a changed lock file rebuilds from scratch instead of leaving a half-built venv.
    """
    state_dir = state_dir.resolve()
    venv, home = state_dir / "bqvenv", state_dir / "home"
    python, executable = venv / "bin" / "python", venv / "bin" / "local-bigquery"
    marker, key = venv / ".opentrack-installed", _requirements_key()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir / ".install.lock"):
        installed = marker.is_file() and marker.read_text().strip() == key
        if installed and python.exists() and executable.exists() and (home / ".duckdb").is_dir():
            return executable
        started = time.monotonic()
        _LOG.info("installing the BigQuery emulator into %s (first time only)", venv)
        python313 = find_python313()
        shutil.rmtree(venv, ignore_errors=True)
        _run([python313, "-m", "venv", str(venv)], "creating the virtualenv", env=_clean_env())
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        # --no-deps: see the header of the requirements file.
        _run(pip + ["install", "--no-deps", "-r", str(REQUIREMENTS)], "pip install", _clean_env())
        _check_dependencies(python)
        home.mkdir(parents=True, exist_ok=True)
        extensions = [
            pin.split("==")[0][len(_EXTENSION_PREFIX) :]
            for pin in _pins()
            if pin.startswith(_EXTENSION_PREFIX)
        ]
        _run(
            [str(python), "-c", _INSTALL_EXTENSIONS, *extensions],
            "installing the DuckDB extensions",
            env=_clean_env(HOME=str(home)),
        )
        marker.write_text(key + "\n")
        _LOG.info("installed the BigQuery emulator in %.1f s", time.monotonic() - started)
    return executable


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SCRUBBED_ENV}
    env.update(overrides)
    return env


# --- processes, ports, readiness ---------------------------------------------------------


def _storage_executable() -> Path:
    executable = Path(sys.executable).parent / "gcp-storage-emulator"
    if not executable.exists():
        raise LocalStackError(
            f"gcp-storage-emulator is not installed next to {sys.executable}; "
            "install the project with its `local` extra (pip install -e '.[local]')"
        )
    return executable


def _version_key(path: Path) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", path.name)]


def pubsub_emulator_command(port: int) -> list[str]:
    """``java -jar <newest emulator jar> --host=127.0.0.1 --port=P``.

    Raises LocalStackError saying what is missing; ``start`` turns that into an unavailable
    Pub/Sub instead of failing, since the package cannot be reinstalled on every machine.
    """
    pattern = os.environ.get("OPENTRACK_PUBSUB_EMULATOR_JAR") or PUBSUB_JAR_GLOB
    jars = sorted((Path(path) for path in glob.glob(pattern)), key=_version_key, reverse=True)
    if not jars or not jars[0].is_file():
        raise LocalStackError(
            f"no Pub/Sub emulator jar matches {pattern} (Debian package "
            "google-cloud-cli-pubsub-emulator; or set OPENTRACK_PUBSUB_EMULATOR_JAR)"
        )
    java = shutil.which("java")
    if java is None:
        raise LocalStackError(
            f"`java` is not on PATH; the Pub/Sub emulator ({jars[0].name}) needs Java 11 or later"
        )
    return [java, "-jar", str(jars[0]), "--host=127.0.0.1", f"--port={port}"]


def free_port() -> int:
    """One loopback port free now (for a server started beside the stack)."""
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """Ports free now; all bound at once so they differ. A race loses fast (server exits)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _spawn(command: list[str], log: Path, env: Mapping[str, str], cwd: Path) -> int:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def _reap(pid: int) -> None:
    process = _CHILDREN.get(pid)
    if process is not None:
        if process.poll() is not None:
            del _CHILDREN[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it


def _is_ours(pid: int, name: str) -> bool:
    # Our own children are known; their /proc cmdline can still be empty right after spawn.
    if pid in _CHILDREN:
        return True
    if not Path("/proc/self").exists():
        return True  # no way to tell; trust state.json
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _MARKERS[name].encode() in cmdline


def _alive(pid: int, name: str) -> bool:
    _reap(pid)
    if not _is_ours(pid, name):
        return False
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(processes: Mapping[str, int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM each group, wait, SIGKILL what is left, wait for it to be gone."""
    running = {name: pid for name, pid in processes.items() if _alive(pid, name)}
    for pid in running.values():
        _signal_group(pid, signal.SIGTERM)
    for sig, wait_s in ((signal.SIGKILL, grace_s), (None, 5.0)):
        deadline = time.monotonic() + wait_s
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = {name: pid for name, pid in running.items() if _alive(pid, name)}
        if sig is not None:
            for name, pid in running.items():
                _LOG.warning("%s (pid %d) ignored SIGTERM for %.0f s: SIGKILL", name, pid, grace_s)
                _signal_group(pid, sig)
    if running:
        raise LocalStackError(f"could not stop {running}")


def _http_get(url: str, timeout_s: float = 2.0) -> tuple[int | None, bytes]:
    """The HTTP status and body; (None, b"") when nothing answers."""
    try:
        with _HTTP.open(url, timeout=timeout_s) as response:
            return int(response.status), response.read(4096)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, b""
    except (urllib.error.URLError, OSError):
        return None, b""


def _http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status, or None when nothing answers."""
    return _http_get(url, timeout_s)[0]


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class _Probe:
    """How to tell that one server is ready, and how long to give it."""

    name: str
    pid: int
    url: str
    log: Path
    timeout_s: float
    body: bytes | None = None  # the exact answer, where any 200 would prove little


def _pubsub_probe_url(endpoint: str) -> str:
    return f"http://{endpoint}/"


def _pubsub_answers(endpoint: str) -> bool:
    """The emulator's own health answer: any server on a reused port would give a 200."""
    status, body = _http_get(_pubsub_probe_url(endpoint))
    return status == 200 and body.strip() == b"Ok"


def _wait_ready(probes: Sequence[_Probe], started: float) -> dict[str, float]:
    """Poll every server in turn until all answer; seconds from spawn to ready, per server.

    Polled together so each server's start time is its own, not the slowest one's. Fails
    fast when a server dies or keeps answering an error: with the wrong HOME, local-bigquery
    comes up but answers every request 400 (the icu extension cannot be loaded), and
    waiting for the timeout would hide that.
    """
    processes = {probe.name: _CHILDREN.get(probe.pid) for probe in probes}  # before reaping
    errors = {probe.name: 0 for probe in probes}
    ready: dict[str, float] = {}
    while True:
        for probe in probes:
            if probe.name in ready:
                continue
            if not _alive(probe.pid, probe.name):
                process = processes[probe.name]
                code = process.returncode if process is not None else None
                raise LocalStackError(
                    f"{probe.name} exited (code {code}) before it was ready; "
                    f"{probe.log}:\n{_log_tail(probe.log)}"
                )
            status, body = _http_get(probe.url)
            elapsed = time.monotonic() - started
            if status == 200 and (probe.body is None or body.strip() == probe.body):
                ready[probe.name] = elapsed
                continue
            errors[probe.name] = errors[probe.name] + 1 if status is not None else 0
            if errors[probe.name] >= 3:
                raise LocalStackError(
                    f"{probe.name} answers HTTP {status} {body[:200]!r} at {probe.url}; "
                    f"{probe.log}:\n{_log_tail(probe.log)}"
                )
            if elapsed > probe.timeout_s:
                raise LocalStackError(
                    f"{probe.name} not ready after {probe.timeout_s:.0f} s at {probe.url}; "
                    f"{probe.log}:\n{_log_tail(probe.log)}"
                )
        if len(ready) == len(probes):
            return ready
        time.sleep(0.1)


def _datasets_url(endpoint: str, project: str) -> str:
    return f"{endpoint}/bigquery/v2/projects/{project}/datasets"


# --- state ------------------------------------------------------------------------------


def _read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise LocalStackError(f"unreadable {state_dir / STATE_FILE}: {error}") from error


def _write_state(state_dir: Path, state: dict) -> None:
    """Atomically: another process may read it at any time (status, down)."""
    partial = state_dir / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, state_dir / STATE_FILE)


def _processes(state: dict) -> dict[str, int]:
    """The servers that were started (an unavailable Pub/Sub has no pid)."""
    return {
        name: int(state[name]["pid"])
        for name in _MARKERS
        if isinstance(state.get(name), dict) and "pid" in state[name]
    }


def _stack(state: dict) -> LocalStack:
    bigquery, storage = state["bigquery"], state["storage"]
    pubsub = state.get("pubsub") or {"unavailable": "not started (state.json predates Pub/Sub)"}
    pids = [int(bigquery["pid"]), int(storage["pid"])]
    if "pid" in pubsub:
        pids.append(int(pubsub["pid"]))
    return LocalStack(
        bigquery_endpoint=bigquery["endpoint"],
        storage_endpoint=storage["endpoint"],
        project=state["project"],
        pids=tuple(pids),
        bigquery_grpc_endpoint=f"127.0.0.1:{bigquery['grpc_port']}",
        pubsub_endpoint=pubsub.get("endpoint", ""),
        pubsub_unavailable=pubsub.get("unavailable", ""),
    )


# --- the API ----------------------------------------------------------------------------


def _spawn_bigquery(
    executable: Path,
    port: int,
    grpc_port: int,
    project: str,
    data: Path,
    gcs_root: Path,
    install_dir: Path,
    state_dir: Path,
) -> int:
    """GCS_LOCAL_ROOT is the one setting passed by environment (it has no flag): the caller's
    own is scrubbed like the others, this one is ours."""
    return _spawn(
        [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--grpc-port", str(grpc_port), "--project", project, "--data-dir", str(data)],
        state_dir / "logs" / "bigquery.log",
        _clean_env(HOME=str(install_dir / "home"), GCS_LOCAL_ROOT=str(gcs_root)),
        state_dir,
    )  # fmt: skip


def _gcs_root(state: dict, state_dir: Path) -> Path:
    """Where the BigQuery emulator finds the GCS emulator's buckets (a state.json written
    before GCS was on disk does not say: its default place)."""
    return Path(state.get("gcs_local_root") or state_dir / GCS_DIR / GCS_STORAGE_DIR)


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
    storage_executable = _storage_executable()
    logs, data, gcs = state_dir / "logs", state_dir / "bqdata", state_dir / GCS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(gcs, ignore_errors=True)  # every `up` starts with no buckets
    gcs_root = gcs / GCS_STORAGE_DIR
    gcs_root.mkdir(parents=True)
    bq_port, grpc_port, gcs_port, pubsub_port = _free_ports(4)
    bigquery_endpoint = f"http://127.0.0.1:{bq_port}"
    storage_endpoint = f"http://127.0.0.1:{gcs_port}"
    pubsub_endpoint = f"127.0.0.1:{pubsub_port}"
    try:
        pubsub_command: list[str] | None = pubsub_emulator_command(pubsub_port)
        pubsub_state: dict = {
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
        spawned["storage"] = _spawn(
            [str(storage_executable), "--data-dir", str(gcs), "start", "--host", "127.0.0.1",
             "--port", str(gcs_port)],
            logs / "storage.log",
            {**os.environ, "STORAGE_DIR": GCS_STORAGE_DIR},
            state_dir,
        )  # fmt: skip
        spawned["bigquery"] = _spawn_bigquery(
            executable, bq_port, grpc_port, project, data, gcs_root, install_dir, state_dir
        )
        if pubsub_command is not None:
            spawned["pubsub"] = _spawn(pubsub_command, logs / "pubsub.log", os.environ, state_dir)
            pubsub_state["pid"] = spawned["pubsub"]
        state = {
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
            _Probe("storage", spawned["storage"], f"{storage_endpoint}/", logs / "storage.log",
                   READY_TIMEOUT_S),
            _Probe("bigquery", spawned["bigquery"], _datasets_url(bigquery_endpoint, project),
                   logs / "bigquery.log", READY_TIMEOUT_S),
        ]  # fmt: skip
        if "pubsub" in spawned:
            probes.append(
                _Probe("pubsub", spawned["pubsub"], _pubsub_probe_url(pubsub_endpoint),
                       logs / "pubsub.log", PUBSUB_READY_TIMEOUT_S, body=b"Ok")
            )  # fmt: skip
        ready = _wait_ready(probes, started)
        for name, seconds in ready.items():
            state[name]["ready_s"] = round(seconds, 2)
        _write_state(state_dir, state)
    except BaseException:
        _terminate(spawned)
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
    _terminate(_processes(state))
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
    bigquery = state["bigquery"]
    _terminate({"bigquery": int(bigquery["pid"])})
    install_dir = Path(state["install_dir"])
    started = time.monotonic()
    pid = _spawn_bigquery(
        ensure_bigquery_emulator(install_dir), int(bigquery["port"]), int(bigquery["grpc_port"]),
        state["project"], Path(state["data_dir"]), _gcs_root(state, state_dir), install_dir,
        state_dir,
    )  # fmt: skip
    bigquery["pid"] = pid
    _write_state(state_dir, state)
    _wait_ready(
        [_Probe("bigquery", pid, _datasets_url(bigquery["endpoint"], state["project"]),
                Path(bigquery["log"]), READY_TIMEOUT_S)],
        started,
    )  # fmt: skip
    return _stack(state)


def status(state_dir: Path) -> LocalStack | None:
    """The stack, if its processes are alive and every endpoint answers."""
    state = _read_state(state_dir.resolve())
    if state is None:
        return None
    if not all(_alive(pid, name) for name, pid in _processes(state).items()):
        return None
    stack = _stack(state)
    if _http_status(_datasets_url(stack.bigquery_endpoint, stack.project)) != 200:
        return None
    if _http_status(f"{stack.storage_endpoint}/") is None:
        return None
    if stack.pubsub_endpoint and not _pubsub_answers(stack.pubsub_endpoint):
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
