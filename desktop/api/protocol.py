"""The OpenAI wire format: requests checked into records, records shaped into responses.

Only JSON boundaries here: no engine, no threads, no sockets. Every refusal is an ``ApiError``
carrying an HTTP status and an OpenAI-style error object whose message says what to change.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from bastion.desktop.answering import AnswerRecord
from bastion.desktop.grounding import MODES, Mode
from bastion.store.chats import Source

MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 256
ADAPTER_SCALE_LIMIT = 4.0  # as bastion.models.adapter_catalog.SCALE_LIMIT


class ApiError(Exception):
    """A request refused with ``status`` and an OpenAI-style error object."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


class Citation(TypedDict):
    n: int
    file: str
    page: int | None
    snippet: str
    score: float
    collection: str
    cited: bool
    cited_by: str


@dataclass(frozen=True)
class ChatRequest:
    """A checked ``POST /v1/chat/completions`` body."""

    model: str
    question: str
    history: list[dict[str, str]]
    system_prompt: str | None
    stream: bool
    include_usage: bool
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    stop: tuple[str, ...]
    mode: Mode
    collections: tuple[str, ...]
    adapters: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked ``POST /v1/embeddings`` body."""

    model: str
    inputs: list[str]
    base64: bool


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, f"The request body is not valid JSON ({error}). Send a JSON object "
                            "with Content-Type: application/json.") from error
    if not isinstance(value, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return value


def chat_request(raw: dict[str, Any]) -> ChatRequest:
    """Check a chat completion request: the last message is the question, earlier user and
    assistant messages are the history, system messages replace the system prompt."""
    model = _string(raw, "model")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects.",
                       param="messages")
    turns: list[dict[str, str]] = []
    system: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError(400, f"messages[{i}] must be an object with 'role' and 'content'.",
                           param=f"messages[{i}]")
        role = message.get("role")
        content = _content(message.get("content"), f"messages[{i}].content")
        if role in ("system", "developer"):
            system.append(content)
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": content})
        else:
            raise ApiError(400, f"messages[{i}].role {role!r} is not supported: use system, "
                                "user or assistant.", param=f"messages[{i}].role")
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ApiError(400, "The last message must be the user's question, and not empty.",
                       param="messages")
    n = raw.get("n", 1)
    if n != 1:
        raise ApiError(400, "Only one choice per request is made: leave 'n' out or set it to 1.",
                       param="n")
    stream = raw.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream")
    options = raw.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    max_tokens = raw.get("max_completion_tokens", raw.get("max_tokens"))
    extension = raw.get("bastion") or {}
    if not isinstance(extension, dict):
        raise ApiError(400, "'bastion' must be an object: {collections, mode, adapters}.",
                       param="bastion")
    collections = tuple(_strings(extension.get("collections", []), "bastion.collections"))
    mode = extension.get("mode") or ("docs" if collections else "model")
    if mode not in MODES:
        raise ApiError(400, f"bastion.mode {mode!r} is not one of {', '.join(MODES)}.",
                       param="bastion.mode")
    if mode != "model" and not collections:
        raise ApiError(400, f"bastion.mode {mode!r} answers from documents: name them in "
                            "bastion.collections (`bastion library list` shows them).",
                       param="bastion.collections")
    return ChatRequest(
        model=model, question=turns[-1]["content"], history=turns[:-1],
        system_prompt="\n\n".join(system) if system else None, stream=stream,
        include_usage=include_usage,
        max_tokens=_number(max_tokens, "max_tokens", 1, 32768, integer=True),
        temperature=_number(raw.get("temperature"), "temperature", 0.0, 2.0),
        top_p=_number(raw.get("top_p"), "top_p", 0.0, 1.0),
        seed=_number(raw.get("seed"), "seed", 0, 2**31 - 1, integer=True),
        stop=_stop(raw.get("stop")), mode=mode, collections=collections,
        adapters=tuple(_adapter(spec) for spec in _strings(extension.get("adapters", []),
                                                           "bastion.adapters")),
    )


def embedding_request(raw: dict[str, Any]) -> EmbeddingRequest:
    model = _string(raw, "model")
    value = raw.get("input")
    inputs = [value] if isinstance(value, str) else value
    if (not isinstance(inputs, list) or not inputs
            or not all(isinstance(t, str) for t in inputs)):
        raise ApiError(400, "'input' must be a string or a non-empty list of strings (token "
                            "arrays are not supported).", param="input")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise ApiError(400, f"At most {MAX_EMBEDDING_INPUTS} inputs per request; split the list.",
                       param="input")
    encoding = raw.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64'.",
                       param="encoding_format")
    return EmbeddingRequest(model=model, inputs=inputs, base64=encoding == "base64")


# -- responses ---------------------------------------------------------------------------------

def models_json(chat_model: str, embedding_model: str | None, created: int) -> dict[str, Any]:
    ids = [chat_model] + ([embedding_model] if embedding_model else [])
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": created, "owned_by": "bastion"}
                     for i in ids]}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(record: AnswerRecord) -> str:
    return "length" if record.finish_reason == "length" else "stop"


def usage_json(record: AnswerRecord) -> dict[str, int]:
    prompt = record.stats.prompt_tokens if record.stats else 0
    generated = record.stats.generated_tokens if record.stats else 0
    return {"prompt_tokens": prompt, "completion_tokens": generated,
            "total_tokens": prompt + generated}


def citation_json(source: Source) -> Citation:
    return Citation(n=source.n, file=source.path, page=source.page, snippet=source.snippet,
                    score=round(source.score, 6), collection=source.collection,
                    cited=source.cited, cited_by=source.cited_by)


def bastion_json(record: AnswerRecord) -> dict[str, Any]:
    """The ``bastion`` extension of a response: citations (file, page), passages, timings."""
    stats = record.stats
    extension: dict[str, Any] = {
        "citations": [citation_json(s) for s in record.citations],
        "passages": [citation_json(s) for s in record.sources],
        "mode": record.mode,
        "collections": list(record.collections),
        "not_found": record.not_found,
        "adapters": record.adapters,
        "timings": {
            "retrieval_ms": round(record.retrieval_ms, 1),
            "time_to_first_token_s": round(stats.time_to_first_token_s, 3) if stats else None,
            "generation_tps": round(stats.generation_tps, 1) if stats else None,
            "total_s": round(record.total_s, 3),
        },
    }
    if record.not_found_reason:
        extension["not_found_reason"] = record.not_found_reason
    if record.adapters_skipped:
        extension["adapters_skipped"] = record.adapters_skipped
    return extension


def completion_json(cid: str, model: str, created: int, record: AnswerRecord) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": record.text},
                     "logprobs": None, "finish_reason": finish_reason(record)}],
        "usage": usage_json(record),
        "bastion": bastion_json(record),
    }


def chunk_json(cid: str, model: str, created: int, delta: dict[str, Any],
               finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra}


def usage_chunk_json(cid: str, model: str, created: int, record: AnswerRecord) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_json(record)}


def embeddings_json(model: str, vectors: np.ndarray, as_base64: bool, tokens: int) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(vectors):
        values = np.asarray(vector, dtype="<f4")
        embedding: Any = (base64.b64encode(values.tobytes()).decode("ascii") if as_base64
                          else [float(x) for x in values])
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def now() -> int:
    return int(time.time())


# -- checks ------------------------------------------------------------------------------------

def _string(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"'{key}' is required and must be a string (GET /v1/models lists "
                            "the names).", param=key)
    return value


def _content(value: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (images and audio are refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise ApiError(400, f"{where}: only text parts are supported.", param=where)
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where} must be a string or a list of text parts.", param=where)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, f"{where} must be a list of names.", param=where)
    return list(value)


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> Any:
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
            or not low <= value <= high):
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"'{where}' must be {kind} from {low:g} to {high:g}.", param=where)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in stops)):
        raise ApiError(400, f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} "
                            "non-empty strings.", param="stop")
    return tuple(stops)


def _adapter(spec: str) -> tuple[str, float]:
    """``NAME`` or ``NAME:SCALE`` (SCALE in [-4, 4], 1 when left out)."""
    name, colon, scale_text = spec.strip().rpartition(":")
    if not colon:
        return scale_text.strip(), 1.0
    try:
        scale = float(scale_text)
    except ValueError:
        scale = math.nan
    if not name.strip() or not math.isfinite(scale) or abs(scale) > ADAPTER_SCALE_LIMIT:
        raise ApiError(400, f"bastion.adapters: {spec!r} must be NAME or NAME:SCALE with SCALE "
                            f"from -{ADAPTER_SCALE_LIMIT:g} to {ADAPTER_SCALE_LIMIT:g} "
                            "(`bastion adapters list` shows the names).", param="bastion.adapters")
    return name.strip(), scale
