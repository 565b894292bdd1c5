"""Export a chat as Markdown, as JSON, or its question/answer pairs as fine-tuning JSONL."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Literal

from bastion.desktop.grounding import cited_and_retrieved
from bastion.store.chats import Chat, Message, Source

ExportFormat = Literal["md", "json", "jsonl"]


def export_chat(chat: Chat, messages: Sequence[Message], fmt: ExportFormat,
                system_prompt: str | None = None) -> str:
    if fmt == "md":
        return to_markdown(chat, messages)
    if fmt == "json":
        return json.dumps({"chat": asdict(chat), "messages": [asdict(m) for m in messages]},
                          indent=2, ensure_ascii=False)
    return to_jsonl(messages, system_prompt)


def to_markdown(chat: Chat, messages: Sequence[Message]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created))
    lines = [f"# {chat.title}", "", f"*{when} · mode: {chat.mode}"
             + (f" · collections: {', '.join(chat.collections)}" if chat.collections else "") + "*", ""]
    for m in messages:
        if m.role == "system":
            continue
        who = "You" if m.role == "user" else "Bastion"
        suffix = " *(interrupted)*" if m.status == "interrupted" else ""
        lines += [f"**{who}:**{suffix}", "", m.content.strip() or "*(no text)*", ""]
        if m.sources:
            cited, also = cited_and_retrieved(m.sources)
            lines.append("Sources:" if cited else "Sources: no passage cited")
            lines += [f"- {_source(s)}" for s in cited]
            if also:
                lines.append("- Also retrieved:")
                lines += [f"  - {_source(s)}" for s in also]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _source(s: Source) -> str:
    page = f", page {s.page}" if s.page is not None else ""
    return f"[{s.n}] {s.path}{page} — {s.snippet}"


def to_jsonl(messages: Sequence[Message], system_prompt: str | None = None) -> str:
    """One ``{"messages": [...]}`` line per complete question/answer pair: the chat format that
    fine-tuning tools (Hugging Face TRL, Axolotl, llama.cpp's finetune examples) accept."""
    out: list[str] = []
    question: Message | None = None
    for m in messages:
        if m.role == "user":
            question = m
        elif m.role == "assistant" and question is not None:
            if m.status == "complete" and m.content.strip() and not m.meta.get("not_found"):
                pair = [{"role": "user", "content": question.content},
                        {"role": "assistant", "content": m.content}]
                if system_prompt:
                    pair.insert(0, {"role": "system", "content": system_prompt})
                out.append(json.dumps({"messages": pair}, ensure_ascii=False))
            question = None
    return "".join(line + "\n" for line in out)
