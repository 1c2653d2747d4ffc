"""A tiny HTTP server on 127.0.0.1 for download tests: serves files with Range support and can
drop the connection part-way through to simulate a flaky network."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    root: Path
    drop_after: int | None = None  # close the first full response after this many bytes
    requests: list

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = self.root / self.path.lstrip("/")
        self.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cls = type(self)
        if cls.drop_after is not None:
            self.wfile.write(body[:cls.drop_after])
            cls.drop_after = None  # only the first response is cut
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(root: Path, drop_after: int | None = None):
    handler = type("Handler", (_Handler,), {"root": root, "drop_after": drop_after, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
