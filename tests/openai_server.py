"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API, owned by the tests.

It plays a model: `reply` is a function from the request's messages to the answer text, so a test
can make it cite, invent citations, obey injected instructions, or refuse. It can also play faults
(`fault`): "500", "429", "malformed", "empty", "timeout", "cut" (a stream cut mid-way), or
"refuse" (close the connection without answering). Every request is recorded for inspection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[list[dict[str, Any]]], str]


@dataclass
class FakeOpenAI:
    reply: Reply = lambda messages: "The corpus does not say."
    fault: str | None = None
    fault_times: int | None = None  # fault only the first N requests, then behave
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(
                    200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append(body)
                owner.headers.append(dict(self.headers))
                fault = owner.fault
                if owner.fault_times is not None and len(owner.requests) > owner.fault_times:
                    fault = None
                if owner.delay:
                    time.sleep(owner.delay)
                if fault == "refuse":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                if fault == "timeout":
                    time.sleep(30)
                    return
                if fault == "500":
                    self._json(500, {"error": {"message": "boom", "type": "server_error"}})
                    return
                if fault == "429":
                    self._json(
                        429,
                        {"error": {"message": "slow down", "type": "rate_limit"}},
                        {"Retry-After": "0"},
                    )
                    return
                if fault == "malformed":
                    data = b"{not json"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = "" if fault == "empty" else owner.reply(body.get("messages", []))
                if body.get("stream"):
                    self._stream(text, cut=fault == "cut")
                    return
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake-model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _stream(self, text: str, cut: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    if cut and i >= max(1, len(words) // 2):
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.connection.close()
                        return
                    chunk = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "fake-model",
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": word + (" " if i < len(words) - 1 else "")},
                                "finish_reason": None,
                            }
                        ],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "fake-model",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def last_prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.requests[-1]["messages"])
