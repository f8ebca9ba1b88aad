"""The BigQuery emulator (local-bigquery): finding Python 3.13, building its virtualenv from
``requirements.txt``, starting it, and its readiness probe."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipeline.localstack.processes import READY_TIMEOUT_S, LocalStackError, Probe, spawn

NAME = "bigquery"  # its key in state.json
MARKER = "local-bigquery"  # in its command line (processes.is_ours)
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
# Pins named duckdb-extension-<name> are also installed into DuckDB (see the requirements).
_EXTENSION_PREFIX = "duckdb-extension-"
_PYTHON_FALLBACK = "/root/.pyenv/versions/3.13.0/bin/python3.13"
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


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SCRUBBED_ENV}
    env.update(overrides)
    return env


# --- Python 3.13 ------------------------------------------------------------------------


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


# --- the emulator's virtualenv ----------------------------------------------------------


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


# --- the server -------------------------------------------------------------------------


def spawn_bigquery(
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
    return spawn(
        [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--grpc-port", str(grpc_port), "--project", project, "--data-dir", str(data)],
        state_dir / "logs" / "bigquery.log",
        _clean_env(HOME=str(install_dir / "home"), GCS_LOCAL_ROOT=str(gcs_root)),
        state_dir,
    )  # fmt: skip


def datasets_url(endpoint: str, project: str) -> str:
    """The dataset listing: what its readiness probe and `status` ask for."""
    return f"{endpoint}/bigquery/v2/projects/{project}/datasets"


def probe(pid: int, endpoint: str, project: str, log: Path) -> Probe:
    return Probe(NAME, MARKER, pid, datasets_url(endpoint, project), log, READY_TIMEOUT_S)
