"""A TCP proxy for the chaos tests: between workers and Postgres, it can drop every connection
(with a reset, as a crashed middlebox or a NAT timeout would) and stall them (as a congested
link would), as psycopg's own tests do with theirs.

It listens on 127.0.0.1 and forwards to a Unix socket (the suite's Postgres listens on no TCP
address), one pair of threads per connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class Proxy:
    def __init__(self, target: str) -> None:
        self.target = target  # the server's Unix socket path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()  # cleared while stalled
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.connections = 0  # accepted so far
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                server.close()
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
                self.connections += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._open.wait()
                dst.sendall(data)
        except OSError:
            pass
        # One side ended: end the other (a shutdown, not only a close, which would wait for
        # the other pump's blocked recv), and forget the pair.
        with self._lock:
            self._pairs = [pair for pair in self._pairs if src not in pair]
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)
        src.close()
        dst.close()

    def drop(self) -> int:
        """Cut every connection open now: the client gets a reset (ECONNRESET), the server an
        end of stream; how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)  # wakes its pump, which closes it: a reset
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def stall(self, seconds: float) -> None:
        """Hold every byte in both directions for ``seconds``, then let it through."""
        self._open.clear()
        time.sleep(seconds)
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop()
