"""A tiny OpenAI-compatible server on 127.0.0.1 whose answers a test scripts, faults included.

Each test sets ``server.behaviour`` (what ``/v1/chat/completions`` does) and reads what the server
saw (``requests``, ``disconnected``). Standard library only; one thread per connection.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeServerState:
    token: str | None = "right-token"
    models: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "big-model",
                                                                  "max_model_len": 8192}])
    behaviour: str = "stream"  # stream, 500, 404-model, malformed, error-event, cut, silent, slow, json
    words: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " server", "."])
    finish_reason: str = "stop"
    tokenize: str | None = "vllm"  # vllm (/tokenize with count), extras, None (no route)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        state = self.server.state
        if state.token is None or self.headers.get("Authorization") == f"Bearer {state.token}":
            return True
        self._json(401, {"error": {"message": "Invalid API key", "type": "auth"}})
        return False

    def do_GET(self) -> None:
        state = self.server.state
        state.paths.append(self.path)
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": state.models})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        state = self.server.state
        state.paths.append(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self._authorised():
            return
        if self.path == "/tokenize" and state.tokenize == "vllm":
            self._json(200, {"count": len(str(body.get("prompt", "")).split()), "tokens": []})
            return
        if self.path == "/extras/tokenize" and state.tokenize == "extras":
            self._json(200, {"tokens": str(body.get("input", "")).split()})
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        state.requests.append(body)
        self._chat(state, body)

    def _chat(self, state: FakeServerState, body: dict[str, Any]) -> None:
        behaviour = state.behaviour
        if behaviour == "500":
            self._json(500, {"error": {"message": "CUDA out of memory"}})
            return
        if behaviour == "404-model":
            self._json(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
            return
        if behaviour == "json":
            self._json(200, {"choices": [{"message": {"content": "whole"}}]})
            return
        if behaviour == "silent":
            state.release.wait(30)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if behaviour == "malformed":
            self._event("this is not json")
            return
        try:
            for i, word in enumerate(state.words):
                if behaviour == "cut" and i == 2:
                    return  # the server dies mid-answer: no finish, no [DONE]
                if behaviour == "error-event" and i == 2:
                    self._event(json.dumps({"error": {"message": "the model crashed"}}))
                    return
                self._event(json.dumps({"choices": [{"index": 0, "delta": {"content": word},
                                                     "finish_reason": None}]}))
                if behaviour == "slow":
                    time.sleep(0.05)
            if behaviour == "slow":  # keep streaming until the client goes away
                while not state.release.is_set():
                    self._event(json.dumps({"choices": [{"delta": {"content": " more"}}]}))
                    time.sleep(0.05)
                return
            self._event(json.dumps({"choices": [{"index": 0, "delta": {},
                                                 "finish_reason": state.finish_reason}]}))
            self._event(json.dumps({"choices": [], "usage": {"prompt_tokens": 11,
                                                             "completion_tokens": len(state.words)}}))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            state.disconnected.set()

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class FakeServer:
    state: FakeServerState
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextlib.contextmanager
def running_fake_server() -> Iterator[FakeServer]:
    """A fake server on a free loopback port for the ``with`` block (test modules wrap it in a
    ``fake_server`` fixture)."""
    state = FakeServerState()
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeServer(state, server.server_address[1])
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
