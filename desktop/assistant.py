"""The assistant use case: a question in a chat becomes a streamed, grounded, stored answer.

Qt-free; the CLI and the window both drive ``Assistant.ask`` — a generator whose events are the
passages found, the answer's text as it streams, and the stored answer at the end. Closing the
generator (or ``cancel()``) stops the answer, which is stored as interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import (
    NOT_FOUND_ANSWER,
    Grounding,
    Mode,
    RetrievalPolicy,
    Retriever,
    clean_answer,
    grounded_user_message,
    interleave,
    is_abstention,
    mark_cited,
    refusal_reason,
    retrieval_query,
    select_passages,
)
from bastion.models.engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    LoadInfo,
    Sampling,
)
from bastion.models.errors import ModelError
from bastion.store.chats import Chat, ChatStore, Message, Source

SAVE_EVERY_S = 0.5  # how often streamed text is written down, so a kill keeps what was shown
HISTORY_TURNS = 20  # most messages sent as history; the engine trims further to fit


class ChatEngine(Protocol):
    """The part of ``bastion.models.engine.Engine`` the assistant uses (fakes implement it)."""

    @property
    def info(self) -> LoadInfo | None: ...

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]: ...

    def cancel(self) -> None: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class PassagesFound:
    """Retrieval finished: these passages (maybe none) go into the prompt."""

    sources: list[Source]
    retrieval_ms: float
    query: str


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The stored answer (complete, or interrupted), with sources and timings in ``meta``."""

    message: Message
    not_found: bool = False


AssistantEvent = PassagesFound | AnswerDelta | AnswerDone


@dataclass
class AnswerBudget:
    """Token budget for one prompt, after DESIGN.md: system + history + passages + question +
    answer reserve ≤ n_ctx. Passages get what is left after the reserve, the system prompt, the
    question and a share kept for recent history."""

    history_share: float = 0.25
    template_overhead: int = 64


@dataclass
class Assistant:
    engine: ChatEngine
    chats: ChatStore
    retriever: Retriever | None = None
    system_prompt: str = "You are Bastion, a helpful assistant."
    sampling: Sampling = field(default_factory=Sampling)
    policy: RetrievalPolicy = field(default_factory=RetrievalPolicy)
    budget: AnswerBudget = field(default_factory=AnswerBudget)
    # A LoRA adapter's catalog name → its validated file (raises with a message if unknown).
    adapter_path: Callable[[str], Path] | None = None

    def cancel(self) -> None:
        self.engine.cancel()

    # -- the use cases -----------------------------------------------------------------------

    def ask(self, chat_id: int, question: str) -> Iterator[AssistantEvent]:
        """Answer ``question`` in chat ``chat_id`` with the chat's mode and collections."""
        question = question.strip()
        if not question:
            raise BastionError("The question is empty: type something to ask.")
        chat = self.chats.chat(chat_id)
        history = self.chats.messages(chat_id)
        # Committed before anything else happens: a crash from here on loses no question.
        self.chats.add_message(chat_id, "user", question)
        if chat.title == "New chat" and not history:
            self.chats.update_chat(chat_id, title=_title_from(question))
        yield from self._answer(chat, history, question)

    def regenerate(self, chat_id: int) -> Iterator[AssistantEvent]:
        """Answer the chat's last question again, replacing the answer after it."""
        messages = self.chats.messages(chat_id)
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise BastionError("This chat has no question to answer again.")
        self.chats.truncate_after(chat_id, last_user.id, inclusive=False)
        history = [m for m in messages if m.id < last_user.id]
        yield from self._answer(self.chats.chat(chat_id), history, last_user.content)

    def edit_and_resend(self, chat_id: int, message_id: int, new_text: str) -> Iterator[AssistantEvent]:
        """Replace a past question (and everything after it) and answer the new text."""
        target = self.chats.message(message_id)
        if target.chat_id != chat_id or target.role != "user":
            raise BastionError("Only your own questions can be edited.")
        self.chats.truncate_after(chat_id, message_id, inclusive=True)
        yield from self.ask(chat_id, new_text)

    # -- the flow ----------------------------------------------------------------------------

    def _answer(self, chat: Chat, history: list[Message], question: str) -> Iterator[AssistantEvent]:
        mode: Mode = chat.mode
        grounding = Grounding()
        retrieval_ms = 0.0
        if mode != "model" and self.retriever is not None and chat.collections:
            started = time.perf_counter()
            previous = [m.content for m in history if m.role == "user"]
            query = retrieval_query(question, previous)
            hits = list(self.retriever.search(query, chat.collections, self.policy.k))
            if query != question:
                # The follow-up may also stand on its own (or the earlier question may be off
                # topic): search it alone too, and interleave the two rankings.
                alone = self.retriever.search(question, chat.collections, self.policy.k)
                hits = interleave(hits, alone, self.policy.k)
            grounding = select_passages(hits, self.policy, self._passage_budget(question),
                                        self.engine.count_tokens, query)
            retrieval_ms = (time.perf_counter() - started) * 1000
            yield PassagesFound(grounding.sources, retrieval_ms, query)

        adapters, used, skipped = self._adapters(chat)
        meta: dict[str, Any] = {
            "model": self.engine.info.name if self.engine.info else None,
            "adapters": used,
            "sampling": self.sampling.to_dict(),
            "mode": mode,
            "collections": chat.collections,
            "retrieval_ms": round(retrieval_ms, 1),
            "passages_dropped_for_budget": grounding.dropped_for_budget,
            "passages_below_threshold": grounding.below_threshold,
        }
        if skipped:
            meta["adapters_skipped"] = skipped
        if mode == "docs" and not grounding.sources:
            # Nothing relevant: say so rather than let the model invent an answer. (In "both"
            # mode the model answers alone, from the question.)
            meta["not_found"] = True
            meta["not_found_reason"] = refusal_reason(grounding, chat.collections, self.policy)
            message = self.chats.add_message(chat.id, "assistant", NOT_FOUND_ANSWER, meta=meta)
            yield AnswerDelta(NOT_FOUND_ANSWER)
            yield AnswerDone(message, not_found=True)
            return

        prompt = self._messages(history, question, grounding, mode)
        answer = self.chats.add_message(chat.id, "assistant", "", status="streaming", meta=meta)
        text, stats, last_save = "", ChatStats(), time.monotonic()
        finished = False
        try:
            for event in self.engine.chat(prompt, self.sampling, adapters):
                if isinstance(event, ChatDelta):
                    text += event.text
                    yield AnswerDelta(event.text)
                    if time.monotonic() - last_save > SAVE_EVERY_S:
                        self.chats.update_content(answer.id, text)
                        last_save = time.monotonic()
                elif isinstance(event, ChatDone):
                    stats = event.stats
            finished = stats.finish_reason != "cancelled"
        finally:
            meta.update(_timings(stats))
            if grounding.texts:
                # A small model may echo the prompt's layout ("[end of passage 2]"). What streamed
                # is shown as it came; the stored answer, which the window re-renders at the end,
                # is the cleaned one. A stopped answer of only debris is stored empty.
                cleaned = clean_answer(text, NOT_FOUND_ANSWER if finished else "")
                if cleaned != text:
                    meta["debris_removed"] = True
                    text = cleaned
            if mode == "docs" and is_abstention(text):
                meta["not_found"] = True
            status = "complete" if finished else "interrupted"
            stored = self.chats.finish_message(answer.id, text, status, meta=meta,
                                               sources=mark_cited(grounding.sources, text, grounding.texts))
        yield AnswerDone(stored, not_found=bool(meta.get("not_found")))

    def _adapters(self, chat: Chat) -> tuple[tuple[AdapterUse, ...], list[dict[str, Any]],
                                            list[dict[str, str]]]:
        """The chat's adapters to answer with, as recorded, and those left out with why.

        An adapter removed since it was chosen, changed on disk, or not made for the model now
        loaded is left out of this answer (and said so in its record), not the whole answer.
        """
        if not chat.adapters:
            return (), [], []
        if self.adapter_path is None:
            raise BastionError("This chat uses LoRA adapters, but no adapter catalog is available.")
        uses: list[AdapterUse] = []
        used: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for name, scale in chat.adapters:
            try:
                uses.append(AdapterUse(str(self.adapter_path(name)), scale))
            except ModelError as error:
                skipped.append({"name": name, "reason": str(error)})
                continue
            used.append({"name": name, "scale": scale})
        return tuple(uses), used, skipped

    def _passage_budget(self, question: str) -> int:
        info = self.engine.info
        n_ctx = info.n_ctx if info else 2048
        reserve = min(self.sampling.max_tokens, n_ctx // 2)
        fixed = sum(self.engine.count_tokens([self.system_prompt, question])) + self.budget.template_overhead
        history = int(n_ctx * self.budget.history_share)
        return max(0, n_ctx - reserve - fixed - history)

    def _messages(self, history: list[Message], question: str, grounding: Grounding,
                  mode: Mode) -> list[dict[str, str]]:
        turns = [
            {"role": m.role, "content": m.content}
            for m in history[-HISTORY_TURNS:]
            if m.role in ("user", "assistant") and m.content and m.status != "failed"
        ]
        return [
            {"role": "system", "content": self.system_prompt},
            *turns,
            {"role": "user", "content": grounded_user_message(question, grounding, mode)},
        ]


def _timings(stats: ChatStats) -> dict[str, Any]:
    return {
        "finish_reason": stats.finish_reason,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "generated_tokens": stats.generated_tokens,
        "time_to_first_token_s": round(stats.time_to_first_token_s, 3),
        "prefill_tps": round(stats.prefill_tps, 1),
        "generation_tps": round(stats.generation_tps, 1),
        "history_messages_dropped": stats.dropped_messages,
        "template_warning": stats.template_warning,
    }


def _title_from(question: str, limit: int = 60) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
