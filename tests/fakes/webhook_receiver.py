"""A local HTTP server that receives webhook POSTs: the path says how it answers.

``/<status>/...`` answers that status (429 with ``Retry-After: 7``), ``/hang``
answers only once ``release`` is set (a receiver that took the request and went
silent), anything else 200.  Keep-alive (HTTP/1.1), so a channel's kept
connections are seen.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def note(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.received.append((path, headers, body))

    def requests(self) -> list[tuple[str, dict[str, str], bytes]]:
        with self._lock:
            return list(self.received)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server: Receiver = self.server  # type: ignore[assignment]
        server.note(self.path, dict(self.headers.items()), body)
        if self.path == "/hang":
            server.release.wait()
            return
        first = self.path.strip("/").split("/")[0]
        status = int(first) if first.isdigit() and len(first) == 3 else 200
        answer = b'{"error": "no"}' if status >= 300 else b"ok"
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@contextmanager
def receiving() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
