"""The BigQuery client never waits forever: every request gets ``request_timeout``.

A loopback server that accepts connections and never answers stands in for a
hung endpoint; the library's own default would wait on it indefinitely.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from pipeline.warehouse.client import make_client


@pytest.fixture()
def silent_endpoint() -> Iterator[str]:
    """http://127.0.0.1:P that accepts connections, reads, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for connection in accepted:
        connection.close()
    server.close()


def test_a_request_to_a_silent_server_times_out(silent_endpoint: str) -> None:
    client = make_client("p", silent_endpoint, request_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.get_dataset("p.d", retry=None)
    assert time.monotonic() - started < 5


def test_a_call_keeps_its_own_timeout(silent_endpoint: str) -> None:
    client = make_client("p", silent_endpoint, request_timeout=30)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.get_dataset("p.d", retry=None, timeout=0.3)
    assert time.monotonic() - started < 5
