"""A recording proxy in front of the llama.cpp server, for `python -m bench llm --cache FILE`.

The local model on two cores answers a question in seconds, so one pass over dev takes a quarter
of an hour. Everything after the model (verification, salvage, abstention, the metrics) is
deterministic given the model's reply, and llama.cpp at temperature 0 gives the same reply to the
same request. The proxy keys each POST by sha256(path + body); a request seen before is answered
from FILE (a JSON-lines file), a new one is passed to the server, streamed back to the client as
it arrives and recorded. Changing the prompt, the excerpts or the model changes the body, so a
stale reply is never reused for a different request.

Replayed replies come back at once: timings from a cached run mean nothing, and `bench llm`
reports them as null for a run in which any reply came from the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def _open(path: Path, mode: str):
    """A .gz cache is read and appended as gzip (appends add gzip members), others as text."""
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")
    return path.open(mode, encoding="utf-8")


class ReplyCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.replies: dict[str, dict[str, str]] = {}
        self.hits = 0
        self.misses = 0
        if path.exists():
            for line in _open(path, "rt").read().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.replies[row["key"]] = row

    @staticmethod
    def key(path: str, body: bytes) -> str:
        return hashlib.sha256(path.encode() + b"\0" + body).hexdigest()

    def get(self, key: str) -> dict[str, str] | None:
        with self.lock:
            row = self.replies.get(key)
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
            return row

    def put(self, key: str, content_type: str, body: bytes) -> None:
        row = {"key": key, "content_type": content_type, "body": body.decode("utf-8", "replace")}
        with self.lock:
            self.replies[key] = row
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _open(self.path, "at") as f:
                f.write(json.dumps(row) + "\n")


def start_proxy(upstream: str, cache: ReplyCache) -> tuple[ThreadingHTTPServer, str]:
    """Serve on a free 127.0.0.1 port; return (server, base URL ending in /v1)."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the reply ends when the connection closes

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self, method: str, body: bytes | None) -> None:
            key = ReplyCache.key(self.path, body or b"") if method == "POST" else None
            row = cache.get(key) if key else None
            if row is not None:
                data = row["body"].encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", row["content_type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=900)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status)
            content_type = resp.getheader("Content-Type", "application/json")
            self.send_header("Content-Type", content_type)
            self.end_headers()
            recorded = bytearray()
            while chunk := resp.read1(65536):
                recorded += chunk
                self.wfile.write(chunk)
                self.wfile.flush()
            conn.close()
            if key and resp.status == 200:
                cache.put(key, content_type, bytes(recorded))

        def do_GET(self) -> None:
            self._forward("GET", None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._forward("POST", self.rfile.read(length))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
