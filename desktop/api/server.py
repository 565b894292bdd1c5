"""An OpenAI-compatible HTTP API on the loopback interface, over the same answers as the window.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON or server-sent events) and
``POST /v1/embeddings``. The standard library's ``ThreadingHTTPServer`` is enough: one thread per
connection only reads, checks and writes; the model work runs on the service's one thread.

Guards, in the order they apply to every request: the peer must be this machine; the Host
header must name it (``localhost``, ``127.0.0.1`` or ``[::1]``, with this port), which defeats
DNS rebinding from a web page (403); the bearer token must match (401); a body must say its
length and stay within ``MAX_BODY_BYTES`` (411, 413). No CORS header is ever sent, so a browser
page cannot read a response. A client that goes away mid-answer is noticed within
``POLL_S`` and its answer stopped.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import queue
import select
import socket
import threading
from collections.abc import Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bastion.desktop.answering import AnswerDelta, AnswerFinished, AnswerRecord
from bastion.desktop.api import protocol
from bastion.desktop.api.protocol import ApiError
from bastion.desktop.api.service import AnswerService, Busy, Embedded, Failed, Job
from bastion.desktop.errors import BastionError
from bastion.models.errors import EngineCrashed, EngineNotLoaded, ModelError, PromptTooLong
from bastion.store.errors import StoreError

LOOPBACK = "127.0.0.1"
MAX_BODY_BYTES = 1024 * 1024
POLL_S = 0.2  # how often a waiting handler checks that its client is still there
READ_TIMEOUT_S = 30.0  # a client that stops sending its request is dropped
LOCAL_HOSTNAMES = ("localhost", "127.0.0.1", "[::1]")

log = logging.getLogger("bastion.api")


class ClientGone(Exception):
    pass


class ApiServer(ThreadingHTTPServer):
    """The API bound to ``127.0.0.1:port`` (0: a free port, see ``port``)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, service: AnswerService, token: str, port: int = 0) -> None:
        self.service = service
        self.token = token
        super().__init__((LOOPBACK, port), ApiHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def allowed_hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in LOCAL_HOSTNAMES} | set(LOCAL_HOSTNAMES)

    def start(self) -> threading.Thread:
        """Serve on a background thread (tests, or an app that keeps its own loop)."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="bastion-api-http", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.service.close()


class ApiHandler(BaseHTTPRequestHandler):
    server: Any  # ApiServer, or the socket's server (socket_server.py): same service and routes
    protocol_version = "HTTP/1.1"
    server_version = "Bastion"
    sys_version = ""
    timeout = READ_TIMEOUT_S

    # -- methods -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_OPTIONS(self) -> None:  # a browser's CORS preflight: refused, with no CORS headers
        self._serve("OPTIONS")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def address_string(self) -> str:
        address = self.client_address
        return str(address[0]) if isinstance(address, tuple) and address else "local socket"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # -- the pipeline ------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        try:
            self._check_guards()
            self._route(method, self.path.split("?", 1)[0].rstrip("/"))
        except ApiError as error:
            # An unread body must never be taken for the next request: errors end the connection.
            self.close_connection = True
            self._send_json(error.status, error.body(), error.headers)
        except ClientGone:
            self.close_connection = True

    def _route(self, method: str, path: str) -> None:
        if (method, path) == ("GET", "/v1/models"):
            self._models()
        elif (method, path) == ("POST", "/v1/chat/completions"):
            self._chat(protocol.chat_request(protocol.parse_json(self._body())))
        elif (method, path) == ("POST", "/v1/embeddings"):
            self._embeddings(protocol.embedding_request(protocol.parse_json(self._body())))
        elif path in ("/v1/models", "/v1/chat/completions", "/v1/embeddings"):
            raise ApiError(405, f"{method} is not allowed on {path}.")
        else:
            raise ApiError(404, f"There is no {self.path} here. This server offers "
                                "/v1/models, /v1/chat/completions and /v1/embeddings.",
                           code="not_found")

    def _check_guards(self) -> None:
        peer = self.client_address[0]
        if not ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback:
            raise ApiError(403, "Only this computer may use this API.", code="forbidden")
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.allowed_hosts():
            raise ApiError(403, "The Host header must name this computer (localhost, 127.0.0.1 "
                                "or [::1]); requests sent through another name are refused.",
                           code="forbidden_host")
        given = self.headers.get("Authorization") or ""
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.server.token.encode()):
            raise ApiError(401, "Missing or wrong API token. Send 'Authorization: Bearer TOKEN'; "
                                "`bastion serve --show-token` prints it.",
                           kind="authentication_error", code="invalid_api_key")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length (chunked bodies are not "
                                "accepted).")
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text or "")
        except ValueError:
            self.close_connection = True
            raise ApiError(411, "A request with a body needs a Content-Length header.") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be taken for a request
            raise ApiError(413, f"The request body is {length} bytes; at most {MAX_BODY_BYTES} "
                                "are accepted.", code="request_too_large")
        return self.rfile.read(length)

    # -- routes ------------------------------------------------------------------------------

    def _models(self) -> None:
        parts = self.server.service.parts
        self._send_json(200, protocol.models_json(parts.chat_model, parts.embedding_model,
                                                  protocol.now()))

    def _chat(self, request: protocol.ChatRequest) -> None:
        model = self.server.service.parts.chat_model
        if request.model != model:
            raise ApiError(404, f"The model {request.model!r} is not loaded here; this server "
                                f"answers with {model!r} (GET /v1/models).",
                           param="model", code="model_not_found")
        job = self._submit(lambda: self.server.service.chat(request))
        events = self._events(job)
        try:
            # Errors before the first words (unknown collection, prompt too long) get a
            # status of their own; once streaming has begun they travel as an error event.
            first = [_first_output(events)]
            if request.stream:
                self._stream(request, first, events)
            else:
                record = _record_of(first, events)
                self._send_json(200, protocol.completion_json(
                    protocol.completion_id(), model, protocol.now(), record))
        finally:
            events.close()

    def _stream(self, request: protocol.ChatRequest, first: list[Any], events: Iterator[Any]) -> None:
        cid, created, model = protocol.completion_id(), protocol.now(), request.model
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._event(protocol.chunk_json(cid, model, created, {"role": "assistant", "content": ""}))
        try:
            for event in _chain(first, events):
                if isinstance(event, AnswerDelta):
                    self._event(protocol.chunk_json(cid, model, created, {"content": event.text}))
                elif isinstance(event, AnswerFinished):
                    record = event.record
                    self._event(protocol.chunk_json(cid, model, created, {},
                                                    protocol.finish_reason(record),
                                                    bastion=protocol.bastion_json(record)))
                    if request.include_usage:
                        self._event(protocol.usage_chunk_json(cid, model, created, record))
        except ApiError as error:
            self._event(error.body())
            return
        self._write(b"data: [DONE]\n\n")

    def _embeddings(self, request: protocol.EmbeddingRequest) -> None:
        parts = self.server.service.parts
        if parts.embedder is None or request.model != parts.embedding_model:
            offered = f"{parts.embedding_model!r}" if parts.embedding_model else "none"
            raise ApiError(404, f"The embedding model {request.model!r} is not offered here "
                                f"(offered: {offered}; GET /v1/models).",
                           param="model", code="model_not_found")
        job = self._submit(lambda: self.server.service.embed(request))
        events = self._events(job)
        try:
            result = next((e for e in events if isinstance(e, Embedded)), None)
        finally:
            events.close()
        if result is None:
            raise ApiError(500, "The embeddings were not made; try again.", kind="server_error")
        self._send_json(200, protocol.embeddings_json(request.model, result.vectors,
                                                      request.base64, result.tokens))

    # -- plumbing ----------------------------------------------------------------------------

    def _submit(self, start: Any) -> Job:
        try:
            job: Job = start()
        except Busy as busy:
            raise ApiError(429, "The model is busy with other requests; try again in "
                                f"{busy.retry_after_s} s.", kind="rate_limit_error",
                           code="busy", headers={"Retry-After": str(busy.retry_after_s)}) from None
        return job

    def _events(self, job: Job) -> Generator[Any, None, None]:
        """The job's events as they come; a failure is raised as an ``ApiError``. If the client
        goes away meanwhile (or the generator is closed early), the job is cancelled."""
        finished = False
        try:
            while True:
                try:
                    item = job.next_item(POLL_S)
                except queue.Empty:
                    if self._client_gone():
                        raise ClientGone() from None
                    continue
                if item is None:
                    finished = True
                    return
                if isinstance(item, Failed):
                    raise _api_error(item.error)
                yield item
        finally:
            if not finished:
                job.cancel()

    def _client_gone(self) -> bool:
        """Whether the client closed its side (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True

    def _event(self, payload: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            raise ClientGone() from None

    def _send_json(self, status: int, payload: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _first_output(events: Iterator[Any]) -> Any:
    """The first event that carries the answer (text or its end): retrieval and prompt
    reading, where requests fail for reasons of their own, are behind it."""
    for event in events:
        if isinstance(event, AnswerDelta | AnswerFinished):
            return event
    raise ApiError(500, "The answer ended before it began; try again.", kind="server_error")


def _chain(first: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


def _record_of(first: list[Any], events: Iterator[Any]) -> AnswerRecord:
    for event in _chain(first, events):
        if isinstance(event, AnswerFinished):
            return event.record
    raise ApiError(500, "The answer ended without a record; try again.", kind="server_error")


def _api_error(error: BaseException) -> ApiError:
    """The HTTP status and error object for a failure of the work."""
    if isinstance(error, ApiError):
        return error
    message = str(error)
    if isinstance(error, PromptTooLong):
        return ApiError(400, message, code="context_length_exceeded")
    if isinstance(error, EngineCrashed | EngineNotLoaded):
        return ApiError(503, message, kind="server_error", code="engine_unavailable")
    if isinstance(error, StoreError) and "no collection named" in message:
        return ApiError(404, message, param="bastion.collections", code="collection_not_found")
    if isinstance(error, ModelError | StoreError | BastionError):
        return ApiError(400, message)
    log.exception("request failed", exc_info=error)
    return ApiError(500, "Bastion failed while answering (see its log); try again.",
                    kind="server_error")
