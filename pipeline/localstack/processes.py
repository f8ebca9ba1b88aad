"""The servers' processes: spawned in their own process group with a log, checked, stopped with
a grace period; free loopback ports; HTTP probes and waiting until every server is ready."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
_LOG = logging.getLogger(__name__)
# Servers started by this process, so stop() can reap them (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Never go through an HTTP proxy from the environment to reach 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalStackError(RuntimeError):
    """The local stack could not be installed, started or reached."""


def free_port() -> int:
    """One loopback port free now (for a server started beside the stack)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Ports free now; all bound at once so they differ. A race loses fast (server exits)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn(command: list[str], log: Path, env: Mapping[str, str], cwd: Path) -> int:
    """Start ``command`` in its own session (its pid is its process group id), output to ``log``."""
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


def is_ours(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs our server: ``marker`` is in its /proc/<pid>/cmdline. A stale
    state.json (after a reboot) must never make `down` signal an unrelated process that got
    the same pid."""
    # Our own children are known; their /proc cmdline can still be empty right after spawn.
    if pid in _CHILDREN:
        return True
    if not Path("/proc/self").exists():
        return True  # no way to tell; trust state.json
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def alive(pid: int, marker: str) -> bool:
    _reap(pid)
    if not is_ours(pid, marker):
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


def terminate(
    processes: Mapping[str, int], markers: Mapping[str, str], grace_s: float = STOP_GRACE_S
) -> None:
    """SIGTERM each group, wait, SIGKILL what is left, wait for it to be gone.

    ``processes`` maps each server's name to its pid, ``markers`` its name to its marker.
    """
    running = {name: pid for name, pid in processes.items() if alive(pid, markers[name])}
    for pid in running.values():
        _signal_group(pid, signal.SIGTERM)
    for sig, wait_s in ((signal.SIGKILL, grace_s), (None, 5.0)):
        deadline = time.monotonic() + wait_s
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = {name: pid for name, pid in running.items() if alive(pid, markers[name])}
        if sig is not None:
            for name, pid in running.items():
                _LOG.warning("%s (pid %d) ignored SIGTERM for %.0f s: SIGKILL", name, pid, grace_s)
                _signal_group(pid, sig)
    if running:
        raise LocalStackError(f"could not stop {running}")


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int | None, bytes]:
    """The HTTP status and body; (None, b"") when nothing answers."""
    try:
        with _HTTP.open(url, timeout=timeout_s) as response:
            return int(response.status), response.read(4096)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, b""
    except (urllib.error.URLError, OSError):
        return None, b""


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status, or None when nothing answers."""
    return http_get(url, timeout_s)[0]


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Probe:
    """How to tell that one server is ready, and how long to give it."""

    name: str
    marker: str  # what its command line contains (see is_ours)
    pid: int
    url: str
    log: Path
    timeout_s: float
    body: bytes | None = None  # the exact answer, where any 200 would prove little


def wait_ready(probes: Sequence[Probe], started: float) -> dict[str, float]:
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
            if not alive(probe.pid, probe.marker):
                process = processes[probe.name]
                code = process.returncode if process is not None else None
                raise LocalStackError(
                    f"{probe.name} exited (code {code}) before it was ready; "
                    f"{probe.log}:\n{log_tail(probe.log)}"
                )
            status, body = http_get(probe.url)
            elapsed = time.monotonic() - started
            if status == 200 and (probe.body is None or body.strip() == probe.body):
                ready[probe.name] = elapsed
                continue
            errors[probe.name] = errors[probe.name] + 1 if status is not None else 0
            if errors[probe.name] >= 3:
                raise LocalStackError(
                    f"{probe.name} answers HTTP {status} {body[:200]!r} at {probe.url}; "
                    f"{probe.log}:\n{log_tail(probe.log)}"
                )
            if elapsed > probe.timeout_s:
                raise LocalStackError(
                    f"{probe.name} not ready after {probe.timeout_s:.0f} s at {probe.url}; "
                    f"{probe.log}:\n{log_tail(probe.log)}"
                )
        if len(ready) == len(probes):
            return ready
        time.sleep(0.1)
