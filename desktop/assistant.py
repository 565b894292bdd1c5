"""The assistant use case: a question in a chat becomes a streamed, grounded, stored answer.

Qt-free; the CLI and the window both drive ``Assistant.ask`` — a generator whose events are the
passages found, the answer's text as it streams, and the stored answer at the end. The answer
itself is made by ``answering.answer_once``; this module keeps the chat: the question committed
first, the answer written as it streams and finished with its record. Closing the generator (or
``cancel()``) stops the answer, which is stored as interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from bastion.desktop.answering import (
    AnswerBudget,
    AnswerConfig,
    AnswerDelta,
    AnswerFinished,
    AnswerRecord,
    ChatEngine,
    GenerationStarted,
    PassagesFound,
    answer_once,
)
from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import RetrievalPolicy, Retriever
from bastion.models.engine_types import Sampling
from bastion.store.chats import Chat, ChatStore, Message, MessageStatus

__all__ = ["AnswerBudget", "AnswerDelta", "AnswerDone", "Assistant", "AssistantEvent", "ChatEngine",
           "PassagesFound"]

SAVE_EVERY_S = 0.5  # how often streamed text is written down, so a kill keeps what was shown


@dataclass(frozen=True)
class AnswerDone:
    """The stored answer (complete, or interrupted), with sources and timings in ``meta``."""

    message: Message
    not_found: bool = False


AssistantEvent: TypeAlias = PassagesFound | AnswerDelta | AnswerDone
# A generator, not just an iterator: closing it stops the answer and stores what was said.
AnswerStream: TypeAlias = Generator[AssistantEvent, None, None]


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
    # Adapters a docs- or both-mode answer uses when its chat chose none: the shipped grounded
    # adapter (``desktop.default_adapter``), unless the settings turn it off.
    grounded_adapters: tuple[tuple[str, float], ...] = ()

    def cancel(self) -> None:
        self.engine.cancel()

    # -- the use cases -----------------------------------------------------------------------

    def ask(self, chat_id: int, question: str) -> AnswerStream:
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

    def regenerate(self, chat_id: int) -> AnswerStream:
        """Answer the chat's last question again, replacing the answer after it."""
        messages = self.chats.messages(chat_id)
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise BastionError("This chat has no question to answer again.")
        self.chats.truncate_after(chat_id, last_user.id, inclusive=False)
        history = [m for m in messages if m.id < last_user.id]
        yield from self._answer(self.chats.chat(chat_id), history, last_user.content)

    def edit_and_resend(self, chat_id: int, message_id: int, new_text: str) -> AnswerStream:
        """Replace a past question (and everything after it) and answer the new text."""
        target = self.chats.message(message_id)
        if target.chat_id != chat_id or target.role != "user":
            raise BastionError("Only your own questions can be edited.")
        self.chats.truncate_after(chat_id, message_id, inclusive=True)
        yield from self.ask(chat_id, new_text)

    # -- the flow ----------------------------------------------------------------------------

    def _answer(self, chat: Chat, history: list[Message], question: str) -> AnswerStream:
        adapters = tuple(chat.adapters) or (self.grounded_adapters if chat.mode != "model" else ())
        config = AnswerConfig(mode=chat.mode, collections=tuple(chat.collections),
                              adapters=adapters, sampling=self.sampling,
                              system_prompt=self.system_prompt, policy=self.policy, budget=self.budget)
        turns = [{"role": m.role, "content": m.content} for m in history if m.status != "failed"]
        stream = answer_once(question, config, self.engine, self.retriever, history=turns,
                             adapter_path=self.adapter_path)
        answer: Message | None = None
        text, last_save = "", time.monotonic()
        try:
            for event in stream:
                if isinstance(event, PassagesFound):
                    yield event
                elif isinstance(event, GenerationStarted):
                    answer = self.chats.add_message(chat.id, "assistant", "", status="streaming",
                                                    meta=event.record.meta())
                elif isinstance(event, AnswerDelta):
                    text += event.text
                    yield event
                    if answer is not None and time.monotonic() - last_save > SAVE_EVERY_S:
                        self.chats.update_content(answer.id, text)
                        last_save = time.monotonic()
                elif isinstance(event, AnswerFinished):
                    break
        finally:
            stream.close()
            record = stream.record
            stored = None if record is None else self._store(chat, answer, record)
        if stored is not None and record is not None:
            yield AnswerDone(stored, not_found=record.not_found)

    def _store(self, chat: Chat, answer: Message | None, record: AnswerRecord) -> Message:
        """Write the answer's record: finish the streaming message, or add the refusal."""
        status: MessageStatus = "complete" if record.complete else "interrupted"
        if answer is None:
            return self.chats.add_message(chat.id, "assistant", record.text, status=status,
                                          meta=record.meta(), sources=record.sources)
        return self.chats.finish_message(answer.id, record.text, status, meta=record.meta(),
                                         sources=record.sources)


def _title_from(question: str, limit: int = 60) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
