"""The Pub/Sub emulator: Google's jar (machine image package google-cloud-cli-pubsub-emulator)
run with ``java -jar``; finding the jar and Java, and its health probe."""

from __future__ import annotations

import glob
import os
import re
import shutil
from pathlib import Path

from pipeline.localstack.processes import LocalStackError, Probe, http_get, spawn

NAME = "pubsub"  # its key in state.json
MARKER = "cloud-pubsub-emulator"  # in its command line (processes.is_ours)
# The JVM answers in 1.3-2.7 s on an idle 2-core machine; next to BigQuery's start and a busy test
# session it can take several times that, and a slow start is no reason to give up.
PUBSUB_READY_TIMEOUT_S = 120.0
# Where the machine image's google-cloud-cli-pubsub-emulator package puts the jar (the version
# is in its name); OPENTRACK_PUBSUB_EMULATOR_JAR overrides it (a path or a glob).
PUBSUB_JAR_GLOB = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"
)


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


def spawn_pubsub(command: list[str], log: Path, cwd: Path) -> int:
    """Run ``command`` (of ``pubsub_emulator_command``) in the caller's environment."""
    return spawn(command, log, os.environ, cwd)


def _probe_url(endpoint: str) -> str:
    return f"http://{endpoint}/"


def probe(pid: int, endpoint: str, log: Path) -> Probe:
    """Its own health answer, ``Ok``: any server on a reused port would give a 200."""
    return Probe(NAME, MARKER, pid, _probe_url(endpoint), log, PUBSUB_READY_TIMEOUT_S, body=b"Ok")


def answers(endpoint: str) -> bool:
    """The emulator's own health answer: any server on a reused port would give a 200."""
    status, body = http_get(_probe_url(endpoint))
    return status == 200 and body.strip() == b"Ok"
