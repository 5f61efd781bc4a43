"""The trainer's HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz``.

A trainer has no API, so a standard-library server on a daemon thread is enough: no event
loop and no dependency, and a scrape reads gauges without ever waiting on the training
loop. A learner that fails shows on the next scrape, as on a predictor.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from latency_oracle.operations.readiness import HTTP_OK, Readiness

HTTP_NOT_FOUND = 404


class StatusEndpoint:
    """Serves one registry and one readiness verdict until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
    ) -> None:
        try:
            self.server = ThreadingHTTPServer((host, port), partial(_Handler, registry, readiness))
        except OSError as exc:  # another trainer on this host: say which setting fixes it
            raise OSError(
                exc.errno,
                f"trainer endpoint cannot listen on {host}:{port} ({exc.strerror}); "
                "set LATENCY_ORACLE_TRAINER_METRICS_PORT to a free port, or 0 for none",
            ) from exc
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="trainer-endpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        request: socket.socket,
        client_address: tuple[str, int],
        server: BaseServer,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        super().__init__(request, client_address, server)  # serves the request right away

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(HTTP_OK, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        elif path == "/healthz":
            self._send_json(HTTP_OK, {"status": "ok"})
        elif path == "/readyz":
            readiness = self.readiness()
            self._send_json(readiness.http_status, readiness.body())
        else:
            self._send_json(HTTP_NOT_FOUND, {"detail": "Not Found"})

    def log_message(self, format: str, *args: object) -> None:
        """Silent: probes and scrapes every few seconds would drown the trainer's log."""

    def _send_json(self, status: int, body: dict[str, object]) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
