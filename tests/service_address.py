"""A stand-in for the Kubernetes Service in front of the Redis master, for failover tests.

Clients keep one address; on failover the operator (or Sentinel with a master-only
Service) points it at the promoted replica, and connections to the dead master break.
``switch`` does both: new connections go to the new port, open ones are cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class ServiceAddress:
    """A TCP forwarder on 127.0.0.1 to one port at a time."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> ServiceAddress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.listener.close()
        self._cut()

    def switch(self, target_port: int) -> None:
        """Route new connections to ``target_port`` and break every open one."""
        self.target_port = target_port
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _shut(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
            except OSError:
                client.close()  # nothing listens there: the client sees a refused call
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _shut(source)
        _shut(sink)


def _shut(sock: socket.socket) -> None:
    """Shut down (which wakes a thread blocked in recv), then close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
