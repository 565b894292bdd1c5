"""The command line's routes on the service's Unix socket: search, ask with a stored chat, unload.

``POST /bastion/search`` answers one JSON object (the hits and timings); ``POST /bastion/unload``
releases the chat model and answers one JSON object (``unloaded_json``); ``POST /bastion/ask``
answers JSON lines, one event each: ``loaded`` (the model that answers), ``passages``,
``delta`` (text as it comes), ``done`` (the stored answer as ``bastion ask --json`` prints it,
plus its meta) or ``error`` (a message a user can act on). These routes exist only on the
socket, whose 0600 mode is its guard; the HTTP port serves the OpenAI routes alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from bastion.desktop.api.protocol import ApiError

SEARCH_PATH = "/bastion/search"
ASK_PATH = "/bastion/ask"
UNLOAD_PATH = "/bastion/unload"
AskMode = Literal["model", "docs", "both"]
MODES: tuple[AskMode, ...] = ("model", "docs", "both")
MAX_K = 1000


@dataclass(frozen=True)
class SearchRequest:
    query: str
    collections: tuple[str, ...]
    k: int


@dataclass(frozen=True)
class AskRequest:
    """What ``bastion ask`` was given; the service makes a chat and answers in it."""

    question: str
    model: str | None
    mode: AskMode
    collections: tuple[str, ...]
    adapters: tuple[tuple[str, float], ...]
    max_tokens: int | None
    temperature: float | None


def search_request(raw: dict[str, Any]) -> SearchRequest:
    query = raw.get("query")
    if not isinstance(query, str):
        raise ApiError(400, "'query' must be a string.", param="query")
    k = raw.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ApiError(400, f"'k' must be a whole number from 1 to {MAX_K}.", param="k")
    return SearchRequest(query, _names(raw, "collections"), k)


def ask_request(raw: dict[str, Any]) -> AskRequest:
    question = raw.get("question")
    if not isinstance(question, str):
        raise ApiError(400, "'question' must be a string.", param="question")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string or null.", param="model")
    mode = raw.get("mode", "model")
    if mode not in MODES:
        raise ApiError(400, f"'mode' must be one of {', '.join(MODES)}.", param="mode")
    adapters: list[tuple[str, float]] = []
    for item in raw.get("adapters") or []:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], int | float) or isinstance(item[1], bool)):
            raise ApiError(400, "'adapters' must be a list of [name, scale] pairs.",
                           param="adapters")
        adapters.append((item[0], float(item[1])))
    max_tokens = raw.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise ApiError(400, "'max_tokens' must be a positive whole number.", param="max_tokens")
    temperature = raw.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float)
                                    or isinstance(temperature, bool) or temperature < 0):
        raise ApiError(400, "'temperature' must be a number from 0.", param="temperature")
    return AskRequest(question, model, cast(AskMode, mode), _names(raw, "collections"), tuple(adapters),
                      max_tokens, None if temperature is None else float(temperature))


def _names(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"'{key}' must be a list of names.", param=key)
    return tuple(value)


def hit_json(hit: Any) -> dict[str, Any]:
    """A search hit (``SearchHit``) as a JSON object: every field, stable names."""
    return asdict(hit)


def loaded_json(info: Any) -> dict[str, Any] | None:
    """The loaded model (``LoadInfo``) as the CLI shows it, or None."""
    if info is None:
        return None
    return {"name": info.name, "path": str(info.path), "n_ctx": info.n_ctx,
            "n_threads": info.n_threads, "load_s": info.load_s,
            "fallback": info.fallback, "fallback_is_new": bool(info.fallback_is_new),
            "template_warning": info.template_warning}


def unloaded_json(info: Any, freed_bytes: int | None) -> dict[str, Any]:
    """What ``bastion models unload`` prints with ``--json``: the released model (None when
    none was loaded) and the memory its engine held (None when not known)."""
    return {"unloaded": info is not None, "model": loaded_json(info),
            "freed_bytes": freed_bytes}
