"""A local S3 server (moto's server mode) on 127.0.0.1, for the s3:// tests; not part of
``opentrack local up``."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.localstack.processes import (
    LocalStackError,
    alive,
    free_port,
    http_status,
    spawn,
    terminate,
)

NAME = "s3"
MARKER = "moto.server"  # in its command line (processes.is_ours)
START_TIMEOUT_S = 30.0


@contextmanager
def s3_server(log: Path, timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Its endpoint URL once it answers (an S3 error document is an answer); stopped however
    the block ends. Its output goes to ``log``; LocalStackError when it does not start."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    pid = spawn(command, log, os.environ, log.parent)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while http_status(endpoint, timeout_s=1.0) is None:
            if not alive(pid, MARKER) or time.monotonic() > deadline:
                raise LocalStackError(f"the S3 server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        terminate({NAME: pid}, {NAME: MARKER})
