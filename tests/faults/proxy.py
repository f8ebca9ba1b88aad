"""A fault-injecting HTTP reverse proxy in front of the BigQuery emulator (a test utility).

Standard library only: a ``ThreadingHTTPServer`` on 127.0.0.1 (free port) forwards method,
path, headers and body to the upstream with ``http.client`` and streams the answer back, unless
the fault plan says otherwise for that request. The plan is deterministic for a given seed and
can be changed at runtime (``proxy.plan = FaultPlan(...)``)::

    with FaultProxy(upstream, FaultPlan(seed=1, rates={"429": 0.1, "503": 0.05},
                                        path_filter=INSERT_ALL, skip_first=2)) as proxy:
        run(["--bigquery_endpoint=" + proxy.endpoint, ...])
    proxy.faults  # Counter by kind

Fault kinds: ``429`` (rateLimitExceeded), ``500`` (backendError, or internalError every other
time), ``503`` (backendError), ``delay`` (the upstream answer is held ``delay_seconds`` before
being sent, past a client timeout), ``reset`` (the socket is closed without an answer, the
request never reaches the upstream), ``lost`` (the upstream does the work, then the socket is
closed instead of answering: the client cannot know the request took effect), ``job_failed``
(a job insert is not forwarded; the answer is the job, done and failed with BigQuery's
``backendError``, as a load job BigQuery itself failed: it ran nowhere and wrote nothing).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

KINDS = ("429", "500", "503", "delay", "reset", "lost", "job_failed")

# Path filters for the BigQuery REST API.
INSERT_ALL = r"/tables/[^/?]+/insertAll"
TABLE_METADATA = r"/datasets/[^/?]+/tables(/[^/?]+)?(\?|$)"  # get/create/patch/list tables
DATASET_METADATA = r"/datasets(/[^/?]+)?(\?|$)"
QUERIES = r"/(queries|jobs)"
# Load jobs: the upload that starts one (resumable: POST, then PUT) and the polls of it.
LOAD_JOBS = r"/upload/bigquery/v2/projects/[^/]+/jobs|/jobs/opentrack_load_"
# A load job started with its data in one request (files under 5 MiB).
LOAD_JOB_INSERTS = r"POST /upload/bigquery/v2/projects/[^/]+/jobs\?uploadType=multipart"

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class FaultPlan:
    """Which requests to fault, and how.

    ``rates``: kind -> probability per eligible request (summed, at most 1).
    ``nth``: request number (1-based, among eligible requests) -> kind; takes precedence.
    ``path_filter``: regex searched in "METHOD path"; only matching requests are eligible.
    ``skip_first``: the first N eligible requests pass unfaulted.
    ``max_faults``: stop injecting after this many faults (None: no limit).
    """

    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    nth: dict[int, str] = field(default_factory=dict)
    path_filter: str | None = None
    skip_first: int = 0
    delay_seconds: float = 5.0
    max_faults: int | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | set(self.nth.values())) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates sum past 1")
        self._random = random.Random(self.seed)
        self._pattern = re.compile(self.path_filter) if self.path_filter else None

    def matches(self, method: str, path: str) -> bool:
        return self._pattern is None or bool(self._pattern.search(f"{method} {path}"))

    def choose(self, eligible_index: int, faults_so_far: int) -> str | None:
        """The fault for the eligible request number ``eligible_index`` (1-based), or None."""
        draw = self._random.random()  # drawn every time: the sequence depends on the seed only
        if eligible_index in self.nth:
            return self.nth[eligible_index]
        if eligible_index <= self.skip_first:
            return None
        if self.max_faults is not None and faults_so_far >= self.max_faults:
            return None
        cumulative = 0.0
        for kind in KINDS:
            cumulative += self.rates.get(kind, 0.0)
            if draw < cumulative:
                return kind
        return None


def failed_job(body: bytes) -> dict:
    """The job resource of a job insert (the JSON part of a multipart upload), as BigQuery
    answers for a job it failed: DONE, with ``backendError``."""
    text = body.decode("utf-8", "replace")
    resource, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    reference = resource["jobReference"]
    error = {"reason": "backendError", "message": "Backend error: job failed (injected)"}
    return {
        **resource,
        "kind": "bigquery#job",
        "id": f"{reference['projectId']}:{reference['jobId']}",
        "status": {"state": "DONE", "errorResult": error, "errors": [error]},
    }


def error_body(kind: str, variant: int = 0) -> tuple[int, dict]:
    """Status and BigQuery-shaped JSON error body for an HTTP fault kind."""
    if kind == "429":
        code, status, reason = 429, "RESOURCE_EXHAUSTED", "rateLimitExceeded"
        message = "Exceeded rate limits: too many api requests per user per method (injected)"
    elif kind == "500":
        code, status = 500, "INTERNAL"
        reason = "backendError" if variant % 2 == 0 else "internalError"
        message = "An internal error occurred and the request could not be completed (injected)"
    elif kind == "503":
        code, status, reason = 503, "UNAVAILABLE", "backendError"
        message = "The service is currently unavailable (injected)"
    else:
        raise ValueError(kind)
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    }
    return code, body


class FaultProxy:
    def __init__(self, upstream: str, plan: FaultPlan | None = None, timeout: float = 60.0):
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.upstream_timeout = timeout
        self.plan = plan or FaultPlan()
        self._lock = threading.Lock()
        self.requests = 0  # all requests seen
        self.eligible = 0  # requests matching the plan's path filter
        self.faults: Counter[str] = Counter()
        self.upstream_failures = 0  # requests the upstream refused or dropped (e.g. while down)
        self.log: list[tuple[int, str, str, str | None]] = []  # (n, method, path, fault)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- accounting ----------------------------------------------------------------------------
    def decide(self, method: str, path: str) -> tuple[int, str | None, int]:
        with self._lock:
            self.requests += 1
            number = self.requests
            fault = None
            if self.plan.matches(method, path):
                self.eligible += 1
                fault = self.plan.choose(self.eligible, sum(self.faults.values()))
                if fault is not None:
                    self.faults[fault] += 1
            variant = self.faults[fault] if fault else 0
            self.log.append((number, method, path, fault))
            return number, fault, variant

    def faulted(self, kind: str | None = None) -> list[tuple[int, str, str, str | None]]:
        with self._lock:
            return [e for e in self.log if e[3] is not None and (kind is None or e[3] == kind)]


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _handle(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _, fault, variant = proxy.decide(self.command, self.path)

        if fault == "reset":
            self._reset()
            return
        if fault == "job_failed":
            self._answer_json(200, failed_job(body))
            return
        if fault in ("429", "500", "503"):
            self._answer_json(*error_body(fault, variant))
            return

        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
        )
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            if fault == "lost":
                response.read()  # the upstream finished; its answer never arrives
                self._reset()
                return
            if fault == "delay":
                # The upstream did the work (a late answer, as after a client timeout).
                threading.Event().wait(proxy.plan.delay_seconds)
            data = response.read()  # whole body: exact Content-Length framing for the client
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and data:
                self.wfile.write(data)
        except (TimeoutError, ConnectionError, http.client.HTTPException):
            with proxy._lock:
                proxy.upstream_failures += 1
            self._reset()
        finally:
            connection.close()

    def _answer_json(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close the socket without an answer (RST, not a graceful FIN)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
