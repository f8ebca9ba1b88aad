"""The GCS emulator (gcp-storage-emulator, from the project's own virtualenv): its command,
its objects on disk under the state dir, and its probes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.localstack.processes import (
    READY_TIMEOUT_S,
    LocalStackError,
    Probe,
    http_status,
    spawn,
)

NAME = "storage"  # its key in state.json
MARKER = "gcp-storage-emulator"  # in its command line (processes.is_ours)
# The GCS emulator's --data-dir, under the state dir, and the directory under it holding one
# directory per bucket (its STORAGE_DIR, pinned so a caller's variable cannot move it).
GCS_DIR = "gcs"
GCS_STORAGE_DIR = ".cloudstorage"


def storage_executable() -> Path:
    executable = Path(sys.executable).parent / "gcp-storage-emulator"
    if not executable.exists():
        raise LocalStackError(
            f"gcp-storage-emulator is not installed next to {sys.executable}; "
            "install the project with its `local` extra (pip install -e '.[local]')"
        )
    return executable


def spawn_storage(executable: Path, data_dir: Path, port: int, log: Path, cwd: Path) -> int:
    """Serve ``data_dir`` (its objects under ``data_dir/GCS_STORAGE_DIR``) on 127.0.0.1:port."""
    return spawn(
        [str(executable), "--data-dir", str(data_dir), "start", "--host", "127.0.0.1",
         "--port", str(port)],
        log,
        {**os.environ, "STORAGE_DIR": GCS_STORAGE_DIR},
        cwd,
    )  # fmt: skip


def probe(pid: int, endpoint: str, log: Path) -> Probe:
    return Probe(NAME, MARKER, pid, f"{endpoint}/", log, READY_TIMEOUT_S)


def answers(endpoint: str) -> bool:
    """Any HTTP answer at all (the emulator's root is no health check)."""
    return http_status(f"{endpoint}/") is not None
