"""What ``--json`` prints: a listing is JSON lines (one object per item, so ``jq``, ``grep`` and
a line-by-line reader all work); ``ask --json`` is one object. Keys are stable: add, never
rename."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bastion.desktop.assistant import AnswerDone
    from bastion.models.catalog import ModelEntry
    from bastion.models.engine_types import LoadInfo
    from bastion.store.chats import Chat, Source

# The answer record's timing fields (``Assistant``'s meta), reported under "timings".
TIMING_KEYS = ("retrieval_ms", "time_to_first_token_s", "prefill_tps", "generation_tps",
               "prompt_tokens", "cached_tokens", "generated_tokens")


def print_json_lines(objects: Iterable[Mapping[str, Any]], out: TextIO | None = None) -> None:
    """One compact JSON object per line."""
    out = out or sys.stdout
    for obj in objects:
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")


def model_json(entry: ModelEntry, default: bool) -> dict[str, Any]:
    """A model of ``bastion models list`` (``default``: the one Bastion starts with)."""
    info = entry.info
    return {
        "id": entry.id,
        "name": entry.name,
        "path": str(entry.path),
        "origin": entry.origin,
        "default": default,
        "file_size": entry.file_size,
        "architecture": info.architecture if info else None,
        "size_label": info.size_label if info else None,
        "parameters": info.parameter_count if info else None,
        "quantization": info.quantization if info else None,
        "context_length": info.context_length if info else None,
        "chat_template": bool(info.chat_template) if info else None,
        "embedding_model": info.is_embedding_model if info else None,
        "sha256": entry.sha256,
        "expected_sha256": entry.expected_sha256,
        "verified": entry.verified,
        "error": entry.error,
    }


def chat_json(chat: Chat, messages: int) -> dict[str, Any]:
    """A chat of ``bastion chats list``; times are Unix seconds."""
    return {
        "id": chat.id,
        "title": chat.title,
        "mode": chat.mode,
        "collections": list(chat.collections),
        "adapters": [{"name": name, "scale": scale} for name, scale in chat.adapters],
        "messages": messages,
        "created": chat.created,
        "updated": chat.updated,
    }


def source_json(source: Source) -> dict[str, Any]:
    """A passage shown to the model: its number in the prompt, file and page (None: no pages)."""
    return {
        "n": source.n,
        "file": source.path,
        "page": source.page,
        "collection": source.collection,
        "score": source.score,
        "snippet": source.snippet,
        "cited": source.cited,
        "cited_by": source.cited_by or None,
        "char_start": source.char_start,
        "char_end": source.char_end,
    }


def answer_json(done: AnswerDone, loaded: LoadInfo | None, total_s: float) -> dict[str, Any]:
    """``bastion ask --json``: the stored answer with its citations, the passages it was given,
    timings, the model and the adapters it was answered with."""
    message = done.message
    meta = message.meta
    timings = {key: meta[key] for key in TIMING_KEYS if key in meta}
    timings["model_load_s"] = round(loaded.load_s, 3) if loaded else None
    timings["total_s"] = round(total_s, 3)
    return {
        "answer": message.content,
        "status": message.status,
        "not_found": done.not_found,
        "not_found_reason": meta.get("not_found_reason"),
        "citations": [source_json(s) for s in message.sources if s.cited],
        "passages": [source_json(s) for s in message.sources],
        "timings": timings,
        "model": {"name": meta.get("model"), "path": str(loaded.path) if loaded else None},
        "adapters": meta.get("adapters", []),
        "adapters_skipped": meta.get("adapters_skipped", []),
        "mode": meta.get("mode"),
        "collections": meta.get("collections", []),
        "sampling": meta.get("sampling"),
        "chat_id": message.chat_id,
        "message_id": message.id,
    }
