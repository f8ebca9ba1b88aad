"""A loopback TCP proxy that loses answers: for gRPC (the Storage Write API) drills.

Every connection is relayed byte for byte to the upstream. The first ``resets``
connections are reset (RST) once the upstream has sent them more than
``answer_bytes`` bytes: the next chunk from the upstream, an answer to a request it
has already carried out, is dropped with the connection, so the client cannot know
its request took effect and must send it again. Later connections are relayed
untouched. Standard library only (a test utility)::

    with DroppingProxy("127.0.0.1:9060", resets=3) as proxy:
        run([f"--bigquery_storage_endpoint={proxy.endpoint}", ...])
    proxy.dropped  # connections reset mid-answer
"""

from __future__ import annotations

import socket
import struct
import threading


class DroppingProxy:
    def __init__(self, upstream: str, resets: int, answer_bytes: int = 2_000) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._resets = resets
        self._answer_bytes = answer_bytes
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.dropped = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> DroppingProxy:
        threading.Thread(target=self._accept, name="dropping-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.connections += 1
                drop = self.connections <= self._resets
            upstream = socket.create_connection(self._upstream)
            state = {"closed": False}
            threading.Thread(
                target=self._pipe, args=(client, upstream, state, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, state, drop), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, target: socket.socket, state: dict, drop: bool) -> None:
        relayed = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if drop and relayed > self._answer_bytes:
                    with self._lock:
                        self.dropped += 1
                    break  # this answer never reaches the client
                target.sendall(data)
                relayed += len(data)
        except OSError:
            pass
        finally:
            self._close(source, target, state)

    def _close(self, *sockets_and_state: object) -> None:
        *sockets, state = sockets_and_state
        if state["closed"]:  # type: ignore[index]
            return
        state["closed"] = True  # type: ignore[index]
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # type: ignore[union-attr]
            except OSError:
                pass
