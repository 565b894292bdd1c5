"""The remote engine: a model on an on-prem OpenAI-compatible server, behind the engine's interface.

For teams whose models outgrow a desktop: llama.cpp's server or vLLM runs the model on a bigger
machine; Bastion keeps retrieval, prompts and chats local and sends only the prompt there, over
``/v1/chat/completions`` with streaming (SSE) and a bearer token. A model is named
``remote:NAME`` wherever a model is chosen (NAME as the server's ``/v1/models`` lists it).

``RemoteEngine`` offers what ``Engine`` offers an answer (``info``, ``chat``, ``cancel``,
``count_tokens``, ``load``, ``unload``/``close``): the answer streams as ``ChatDelta`` events and
ends with one ``ChatDone``; Stop (``cancel()``, from any thread) or closing the stream shuts the
connection, and the server stops generating when its client is gone. LoRA adapters are applied
by the local engine only.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    LoadInfo,
    LoadOptions,
    Sampling,
)
from .errors import EngineNotLoaded
from .remote_http import (
    Connection,
    RemoteEndpoint,
    RemoteError,
    RemoteModelNotFound,
    RemoteProtocolError,
    RemoteServerError,
    StreamClosed,
    error_detail,
    read_json,
    sse_data,
    status_error,
)

REMOTE_PREFIX = "remote:"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
# Without a tokenizer on the server, tokens are estimated high (English runs ~4 bytes a token),
# so a prompt budgeted with the estimate fits.
ESTIMATED_BYTES_PER_TOKEN = 3


def remote_model_name(spec: str | None) -> str | None:
    """NAME if ``spec`` is ``remote:NAME``, else None (a local model)."""
    if spec and spec.startswith(REMOTE_PREFIX):
        return spec[len(REMOTE_PREFIX):].strip() or None
    return None


def list_models(endpoint: RemoteEndpoint, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                read_timeout_s: float = READ_TIMEOUT_S) -> list[dict[str, Any]]:
    """The models the server serves (its ``/v1/models`` entries, each with an ``id``).

    Raises:
        RemoteError: the server cannot be reached, refuses the token or does not answer as an
            OpenAI-compatible API does.
    """
    connection = Connection(endpoint, connect_timeout_s, read_timeout_s)
    try:
        response = connection.request("GET", f"{endpoint.base_path}/models")
        if response.status != 200:
            raise status_error(endpoint, response.status, error_detail(response), None,
                               "list of models at /models")
        body = read_json(connection, response)
    finally:
        connection.close()
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise RemoteProtocolError(f"The server at {endpoint.url} answered /models without a list "
                                  "of models; is it an OpenAI-compatible API?")
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]


class _Request:
    """The answer being streamed: its connection, and whether Stop was asked."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()
        self.connection.abort()


class RemoteEngine:
    """A model on a remote OpenAI-compatible server, used as the local ``Engine`` is.

    Args:
        endpoint: The server's address and token.
        connect_timeout_s: How long to wait for the server to accept a connection.
        read_timeout_s: How long the server may stay silent (before the first token, between
            tokens, for a token count) before the request is given up.
    """

    def __init__(self, endpoint: RemoteEndpoint, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._info: LoadInfo | None = None
        self._model: str | None = None
        self._request: _Request | None = None
        self._lock = threading.Lock()
        self._tokenize: str | None = None  # which tokenize route the server has, once known

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def info(self) -> LoadInfo | None:
        return self._info

    @property
    def gguf_info(self) -> None:
        """No local file: adapters cannot be checked against (or applied to) a remote model."""
        return None

    @property
    def pid(self) -> int | None:
        return None

    def load(self, model: str, options: LoadOptions | None = None) -> LoadInfo:
        """Check that the server is reachable, accepts the token and serves ``model``.

        The context size is the server's (vLLM's ``max_model_len``, llama.cpp's ``n_ctx``) when it
        says, else ``options.n_ctx`` (set it to the server's context).

        Raises:
            RemoteModelNotFound: the server does not serve ``model`` (the message lists what it
                serves).
            RemoteError: unreachable, timed out, token refused, or not an OpenAI-compatible API.
        """
        options = options or LoadOptions()
        started = time.perf_counter()
        entries = list_models(self.endpoint, self.connect_timeout_s, self.read_timeout_s)
        entry = next((e for e in entries if e["id"] == model), None)
        if entry is None:
            served = ", ".join(REMOTE_PREFIX + str(e["id"]) for e in entries) or "none"
            raise RemoteModelNotFound(
                f"The inference server at {self.endpoint.url} does not serve {model!r}. It serves: "
                f"{served}. Choose one of those (`bastion models remote` lists them).")
        n_ctx = _context_of(entry) or self._server_context() or options.n_ctx
        self._model = model
        self._info = LoadInfo(
            path=Path(REMOTE_PREFIX + model), name=REMOTE_PREFIX + model, n_ctx=n_ctx,
            n_ctx_train=n_ctx, n_threads=0, template_source="server", template_warning=None,
            special_tokens=0, load_s=time.perf_counter() - started,
            cpu_kernels=f"remote ({self.endpoint.origin})",
        )
        return self._info

    def unload(self) -> None:
        self.cancel()
        self._info, self._model = None, None

    close = unload

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        sampling: Sampling | None = None,
        adapters: Sequence[AdapterUse] = (),
    ) -> Iterator[ChatEvent]:
        """Stream the answer to ``messages``: ``ChatDelta`` events, then one ``ChatDone``.

        The server applies the model's chat template and trims nothing: a prompt longer than its
        context is refused by it (said in the error). Closing the iterator early, or
        ``cancel()``, closes the connection; the answer then ends with ``finish_reason``
        ``cancelled``.

        Raises:
            RemoteError: the server cannot be reached, times out, refuses the token, does not
                serve the model, fails, or sends a stream that is not a chat stream.
            EngineNotLoaded: no model was loaded.
        """
        sampling = sampling or Sampling()
        if adapters:
            raise RemoteError(
                "LoRA adapters are applied by the local engine, not by a remote server: "
                "answer without adapters, or choose a local model for them.")
        with self._lock:
            model = self._require_model()
            connection = Connection(self.endpoint, self.connect_timeout_s, self.read_timeout_s)
            request = _Request(connection)
            self._request = request
            try:
                yield from self._stream(request, model, list(messages), sampling)
            finally:
                self._request = None
                connection.close()

    def _stream(self, request: _Request, model: str, messages: list[dict[str, str]],
                sampling: Sampling) -> Iterator[ChatEvent]:
        connection, url = request.connection, self.endpoint.url
        started = time.perf_counter()
        body = {"model": model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, **_sampling_fields(sampling)}
        try:
            response = connection.request("POST", f"{self.endpoint.base_path}/chat/completions",
                                          body, accept="text/event-stream")
        except RemoteError:
            if request.cancelled.is_set():
                yield ChatDone(ChatStats(finish_reason="cancelled"))
                return
            raise
        if response.status != 200:
            raise status_error(self.endpoint, response.status, error_detail(response), model,
                               "chat completions at /chat/completions")
        content_type = response.getheader("Content-Type", "")
        if "text/event-stream" not in content_type:
            raise RemoteProtocolError(
                f"The server at {url} answered a streamed chat with {content_type or 'no type'}, "
                "not an event stream. Bastion needs streaming (llama.cpp's server and vLLM "
                "stream); check that the address is an OpenAI-compatible API.")
        first: float | None = None
        chunks = 0
        finish: str | None = None
        usage: dict[str, Any] = {}
        try:
            for data in sse_data(connection, response):
                chunk = _chunk(data, url)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict):
                        continue
                    delta = choice.get("delta") or {}
                    text = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(text, str) and text:
                        if first is None:
                            first = time.perf_counter() - started
                        chunks += 1
                        yield ChatDelta(text, 1)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        except StreamClosed:
            if finish is None and not request.cancelled.is_set():
                raise
        ended = time.perf_counter() - started
        if request.cancelled.is_set():
            finish = "cancelled"
        generated = _int(usage.get("completion_tokens")) or chunks
        prompt = _int(usage.get("prompt_tokens"))
        yield ChatDone(ChatStats(
            prompt_tokens=prompt, prefill_tokens=prompt, prefill_s=first or 0.0,
            generated_tokens=generated, generation_s=ended - (first or ended),
            time_to_first_token_s=first or 0.0,
            finish_reason=finish if finish in ("length", "cancelled") else "stop",
        ))

    def cancel(self) -> None:
        """Stop the answer being streamed (closes its connection); a no-op when idle."""
        request = self._request
        if request is not None:
            request.cancel()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts from the server's tokenizer (llama.cpp's ``/tokenize`` or
        ``/extras/tokenize``, vLLM's ``/tokenize``); estimated high where it has none."""
        model = self._require_model()
        return [self._count(model, text) for text in texts]

    # -- internals ---------------------------------------------------------------------------

    def _count(self, model: str, text: str) -> int:
        if not text:
            return 0
        routes = [self._tokenize] if self._tokenize else ["tokenize", "extras/tokenize"]
        for route in routes:
            if route == "estimate":
                break
            count = self._count_by(route, model, text)
            if count is not None:
                self._tokenize = route
                return count
        self._tokenize = "estimate"
        return math.ceil(len(text.encode("utf-8")) / ESTIMATED_BYTES_PER_TOKEN)

    def _count_by(self, route: str, model: str, text: str) -> int | None:
        """The count by ``route``, or None if the server has no such route."""
        if route == "tokenize":  # one body both llama.cpp ("content") and vLLM ("prompt") read
            body: dict[str, Any] = {"model": model, "content": text, "prompt": text,
                                    "add_special": False, "add_special_tokens": False}
        else:
            body = {"input": text}
        connection = Connection(self.endpoint, self.connect_timeout_s, self.read_timeout_s)
        try:
            response = connection.request("POST", f"{self.endpoint.root_path}/{route}", body)
            if response.status in (401, 403) or response.status >= 500:
                raise status_error(self.endpoint, response.status, error_detail(response),
                                   model, f"/{route}")
            if response.status != 200:
                return None
            reply = read_json(connection, response)
        except RemoteProtocolError:
            return None
        finally:
            connection.close()
        if isinstance(reply, dict):
            if isinstance(reply.get("count"), int):
                return int(reply["count"])
            if isinstance(reply.get("tokens"), list):
                return len(reply["tokens"])
        return None

    def _server_context(self) -> int | None:
        """llama.cpp's server tells its context at ``/props``; other servers have no such page."""
        connection = Connection(self.endpoint, self.connect_timeout_s, self.read_timeout_s)
        try:
            response = connection.request("GET", f"{self.endpoint.root_path}/props")
            if response.status != 200:
                return None
            reply = read_json(connection, response)
        except RemoteError:
            return None
        finally:
            connection.close()
        settings = reply.get("default_generation_settings") if isinstance(reply, dict) else None
        return _int(settings.get("n_ctx")) or None if isinstance(settings, dict) else None

    def _require_model(self) -> str:
        if self._model is None:
            raise EngineNotLoaded("No remote model is chosen. Choose one with --model remote:NAME "
                                  "(`bastion models remote` lists the server's models).")
        return self._model


def _sampling_fields(sampling: Sampling) -> dict[str, Any]:
    """OpenAI's sampling fields, plus the extensions llama.cpp and vLLM both read."""
    fields: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repeat_penalty,  # llama.cpp's name
        "repetition_penalty": sampling.repeat_penalty,  # vLLM's name
    }
    if sampling.top_k > 0:  # 0 is Bastion's "off"; older vLLM refuses it (its "off" is -1)
        fields["top_k"] = sampling.top_k
    return fields


def _chunk(data: str, url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise RemoteProtocolError(
            f"The inference server at {url} sent a stream Bastion cannot read (an event that is "
            "not a JSON object). Is it an OpenAI-compatible API (llama.cpp's server, vLLM)?")
    error = chunk.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteServerError(f"The inference server at {url} stopped the answer with an "
                                f"error: {message}. Check the server's log, then ask again.")
    return chunk


def _context_of(entry: dict[str, Any]) -> int | None:
    meta = entry.get("meta")
    for value in (entry.get("max_model_len"), meta.get("n_ctx") if isinstance(meta, dict) else None):
        if _int(value):
            return _int(value)
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
