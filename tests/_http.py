"""The HTTP answers of the tests' mock servers (mock_providers, mock_count_api): a JSON body with
its length, or a body streamed until the connection closes; no request log."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


def serve_in_thread(server: HTTPServer) -> threading.Thread:
    """Serve from a daemon thread. serve_forever checks for shutdown() every 20 ms, not its
    default 500 ms: a mock's close() took up to half a second, hundreds of times a suite."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return thread


class JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status: int, body, headers: dict | None = None):
        """`body` as JSON (bytes as they are); an iterable of byte chunks is streamed (`_stream`)."""
        if not isinstance(body, (bytes, str, dict, list, int, float, type(None))):
            return self._stream(status, body, headers)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._head(status, headers)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout, a refused body): as a real server
            self.close_connection = True

    def _stream(self, status: int, chunks, headers: dict | None):
        self._head(status, headers)
        self.end_headers()  # no content-length: HTTP/1.0, the body ends when the connection does
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def _head(self, status: int, headers: dict | None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
