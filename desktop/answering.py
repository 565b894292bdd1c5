"""Making one answer: retrieval, context budget, prompt, streaming and citations — nothing stored.

``answer_once`` is the one way Bastion makes an answer. The chat use case (``assistant.py``)
stores what it makes in a chat; the lab records it in a run folder; the local API returns it to
a client. Qt-free, and free of the chat history: the caller passes the earlier turns it wants
the model to see.

The answer streams as an iterator of events: ``PassagesFound`` (retrieval finished),
``GenerationStarted`` (the prompt is ready, the model is asked), ``AnswerDelta`` (text as it
comes) and ``AnswerFinished`` carrying the ``AnswerRecord``. Closing the stream (or the engine's
``cancel()``) stops the answer; its record, marked incomplete, is then on ``AnswerStream.record``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeAlias

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
from bastion.store.chats import Source

HISTORY_TURNS = 20  # most earlier messages sent as history; the engine trims further to fit
DEFAULT_SYSTEM_PROMPT = "You are Bastion, a helpful assistant."

Turn: TypeAlias = Mapping[str, str]  # {"role": "user" | "assistant", "content": ...}


class ChatEngine(Protocol):
    """The part of ``bastion.models.engine.Engine`` an answer needs (fakes implement it)."""

    @property
    def info(self) -> LoadInfo | None: ...

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]: ...

    def cancel(self) -> None: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass
class AnswerBudget:
    """Token budget for one prompt, after DESIGN.md: system + history + passages + question +
    answer reserve ≤ n_ctx. Passages get what is left after the reserve, the system prompt, the
    question and a share kept for recent history."""

    history_share: float = 0.25
    template_overhead: int = 64


@dataclass(frozen=True)
class AnswerConfig:
    """How to answer: the mode, where to search, the adapters, sampling and prompt.

    Args:
        mode: ``model`` (the model alone), ``docs`` (only the documents; "not found" when none
            is relevant) or ``both`` (documents where they help, else the model alone).
        collections: Document collections to search (none: nothing is retrieved).
        adapters: LoRA adapters as (catalog name, scale).
        sampling: Sampling parameters for the model.
        system_prompt: The system message.
        policy: How many passages to fetch and which are relevant enough.
        budget: How the context is shared between passages and history.
        stop: Texts that end the answer where they first appear (not included in it).
    """

    mode: Mode = "model"
    collections: tuple[str, ...] = ()
    adapters: tuple[tuple[str, float], ...] = ()
    sampling: Sampling = field(default_factory=Sampling)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    policy: RetrievalPolicy = field(default_factory=RetrievalPolicy)
    budget: AnswerBudget = field(default_factory=AnswerBudget)
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnswerRecord:
    """One answer as it was made: its text, what it was made from, what it cites and its cost.

    ``complete`` is False for an answer stopped before its end (closed, cancelled, failed);
    ``stats`` is None until the model was asked (and stays None for a refusal, which asks it
    nothing). ``sources`` are the passages put in the prompt, numbered as there, with ``cited``
    marked; ``passage_texts`` holds their full texts in the same order.
    """

    text: str
    complete: bool
    mode: Mode
    collections: tuple[str, ...]
    model: str | None
    sampling: Sampling
    sources: list[Source] = field(default_factory=list)
    passage_texts: list[str] = field(default_factory=list)
    query: str | None = None  # what was searched, when anything was
    not_found: bool = False
    not_found_reason: str | None = None  # set when the answer was refused without the model
    adapters: list[dict[str, Any]] = field(default_factory=list)  # used: name, scale
    adapters_skipped: list[dict[str, str]] = field(default_factory=list)  # name, reason
    retrieval_ms: float = 0.0
    passages_dropped_for_budget: int = 0
    passages_below_threshold: int = 0
    debris_removed: bool = False
    stats: ChatStats | None = None
    total_s: float = 0.0

    @property
    def citations(self) -> list[Source]:
        """The sources the answer cites, in prompt order."""
        return [s for s in self.sources if s.cited]

    @property
    def finish_reason(self) -> str:
        """``stop``, ``length`` or ``cancelled`` (a refusal counts as ``stop``)."""
        if self.stats is None:
            return "stop" if self.complete else "cancelled"
        return str(self.stats.finish_reason)

    def meta(self) -> dict[str, Any]:
        """The record as a chat message keeps it (``Message.meta``)."""
        meta: dict[str, Any] = {
            "model": self.model,
            "adapters": self.adapters,
            "sampling": self.sampling.to_dict(),
            "mode": self.mode,
            "collections": list(self.collections),
            "retrieval_ms": round(self.retrieval_ms, 1),
            "passages_dropped_for_budget": self.passages_dropped_for_budget,
            "passages_below_threshold": self.passages_below_threshold,
        }
        if self.adapters_skipped:
            meta["adapters_skipped"] = self.adapters_skipped
        if self.stats is not None:
            meta.update(_timings(self.stats))
        if self.debris_removed:
            meta["debris_removed"] = True
        if self.not_found:
            meta["not_found"] = True
        if self.not_found_reason is not None:
            meta["not_found_reason"] = self.not_found_reason
        return meta


@dataclass(frozen=True)
class PassagesFound:
    """Retrieval finished: these passages (maybe none) go into the prompt."""

    sources: list[Source]
    retrieval_ms: float
    query: str


@dataclass(frozen=True)
class GenerationStarted:
    """The prompt is ready and the model is asked; ``record`` is the answer so far (no text)."""

    record: AnswerRecord


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class AnswerFinished:
    """The answer is complete, or was cut at max tokens or cancelled by the engine."""

    record: AnswerRecord


AnswerEvent: TypeAlias = PassagesFound | GenerationStarted | AnswerDelta | AnswerFinished


class AnswerStream:
    """The events of one answer, and its record once it has ended however it ended.

    An iterator: ``for event in stream``. ``close()`` stops the answer (the engine's request is
    cancelled); ``record`` is then the answer as far as it got, or None if the model had not
    been asked yet.
    """

    def __init__(self, events: Generator[AnswerEvent, None, None], state: _State) -> None:
        self._events = events
        self._state = state

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> AnswerEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def record(self) -> AnswerRecord | None:
        return self._state.record


@dataclass
class _State:
    record: AnswerRecord | None = None


def answer_once(
    question: str,
    config: AnswerConfig,
    engine: ChatEngine,
    retriever: Retriever | None = None,
    *,
    history: Sequence[Turn] = (),
    adapter_path: Callable[[str], Path] | None = None,
) -> AnswerStream:
    """Make one answer to ``question``: retrieve, budget, prompt, stream, cite.

    Args:
        question: What the person asked.
        config: Mode, collections, adapters, sampling and prompt.
        engine: The loaded engine (one answer at a time).
        retriever: Searches the collections (None: nothing is retrieved).
        history: Earlier turns of the conversation, oldest first (the latest at most
            ``HISTORY_TURNS`` are sent; a short follow-up is searched with the previous question).
        adapter_path: Maps an adapter's catalog name to its checked file; an adapter it refuses
            (``ModelError``) is left out of this answer and named in ``adapters_skipped``.

    Returns:
        The answer's events; nothing happens until the first is asked for.

    Raises:
        BastionError: the question is empty, or adapters are asked for without a catalog.
    """
    question = question.strip()
    if not question:
        raise BastionError("The question is empty: type something to ask.")
    if config.adapters and adapter_path is None:
        raise BastionError("This answer uses LoRA adapters, but no adapter catalog is available.")
    state = _State()
    events = _answer(question, config, engine, retriever, list(history), adapter_path, state)
    return AnswerStream(events, state)


def _answer(question: str, config: AnswerConfig, engine: ChatEngine, retriever: Retriever | None,
            history: list[Turn], adapter_path: Callable[[str], Path] | None,
            state: _State) -> Generator[AnswerEvent, None, None]:
    started = time.perf_counter()
    mode = config.mode
    grounding = Grounding()
    full_texts: dict[tuple[str, int | None], str] = {}
    retrieval_ms = 0.0
    query: str | None = None
    if mode != "model" and retriever is not None and config.collections:
        t0 = time.perf_counter()
        previous = [t["content"] for t in history if t.get("role") == "user"]
        query = retrieval_query(question, previous)
        collections = list(config.collections)
        hits = list(retriever.search(query, collections, config.policy.k))
        if query != question:
            # The follow-up may also stand on its own (or the earlier question may be off
            # topic): search it alone too, and interleave the two rankings.
            alone = retriever.search(question, collections, config.policy.k)
            hits = interleave(hits, alone, config.policy.k)
        grounding = select_passages(hits, config.policy, _passage_budget(engine, config, question),
                                    engine.count_tokens, query)
        full_texts = {(h.path, h.char_start): h.text for h in hits}
        retrieval_ms = (time.perf_counter() - t0) * 1000
        yield PassagesFound(grounding.sources, retrieval_ms, query)

    adapters, used, skipped = _adapters(config.adapters, adapter_path)
    draft = AnswerRecord(
        text="", complete=False, mode=mode, collections=tuple(config.collections),
        model=engine.info.name if engine.info else None, sampling=config.sampling,
        sources=list(grounding.sources), passage_texts=[full_texts.get((s.path, s.char_start), s.snippet)
                                               for s in grounding.sources], query=query,
        adapters=used, adapters_skipped=skipped, retrieval_ms=retrieval_ms,
        passages_dropped_for_budget=grounding.dropped_for_budget,
        passages_below_threshold=grounding.below_threshold,
    )
    if mode == "docs" and not grounding.sources:
        # Nothing relevant: say so rather than let the model invent an answer. (In "both" mode
        # the model answers alone, from the question.)
        state.record = _replace(draft, text=NOT_FOUND_ANSWER, complete=True, not_found=True,
                                not_found_reason=refusal_reason(grounding, config.collections,
                                                                config.policy),
                                total_s=time.perf_counter() - started)
        yield AnswerDelta(NOT_FOUND_ANSWER)
        yield AnswerFinished(state.record)
        return

    prompt = _messages(config.system_prompt, history, question, grounding, mode)
    yield GenerationStarted(draft)
    text, stats, emitted, stopped = "", None, 0, False
    stops = [t for t in config.stop if t]
    # Text that may be the start of a stop sequence is held back until it is known not to be.
    hold = max((len(t) for t in stops), default=1) - 1
    try:
        chat = engine.chat(prompt, config.sampling, adapters)
        try:
            for event in chat:
                if isinstance(event, ChatDelta) and not stopped:
                    text += event.text
                    cut = _first_stop(text, stops, max(0, emitted - hold))
                    if cut is not None:
                        # Asked to stop; the engine's last events are read, not shown, so
                        # its statistics still come.
                        text, stopped = text[:cut], True
                        engine.cancel()
                    safe = len(text) if stopped else max(emitted, len(text) - hold)
                    if safe > emitted:
                        yield AnswerDelta(text[emitted:safe])
                        emitted = safe
                elif isinstance(event, ChatDone):
                    stats = replace(event.stats, finish_reason="stop") if stopped else event.stats
            if emitted < len(text):
                yield AnswerDelta(text[emitted:])
        finally:
            close = getattr(chat, "close", None)
            if close is not None:  # the engine stops a request whose stream is closed
                close()
    finally:
        # Also when closed or failed mid-answer: the record of what came, marked incomplete.
        state.record = _finished(draft, text, stats, grounding, time.perf_counter() - started)
    yield AnswerFinished(state.record)


def _finished(draft: AnswerRecord, text: str, stats: ChatStats | None, grounding: Grounding,
              total_s: float) -> AnswerRecord:
    complete = stats is not None and stats.finish_reason != "cancelled"
    debris = False
    if grounding.texts:
        # A small model may echo the prompt's layout ("[end of passage 2]"). What streamed is
        # shown as it came; the record holds the cleaned answer. A stopped answer of only
        # debris is left empty.
        cleaned = clean_answer(text, NOT_FOUND_ANSWER if complete else "")
        debris, text = cleaned != text, cleaned
    return _replace(
        draft, text=text, complete=complete,
        stats=stats if stats is not None else ChatStats(finish_reason="cancelled"),
        sources=mark_cited(grounding.sources, text, grounding.texts), debris_removed=debris,
        not_found=draft.mode == "docs" and is_abstention(text), total_s=total_s,
    )


def _first_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    """Where the earliest stop sequence begins in ``text`` (searched from ``start``), if any."""
    found = [i for i in (text.find(t, start) for t in stops) if i >= 0]
    return min(found) if found else None


def _replace(record: AnswerRecord, **changes: Any) -> AnswerRecord:
    return AnswerRecord(**{**record.__dict__, **changes})


def _adapters(wanted: Sequence[tuple[str, float]], adapter_path: Callable[[str], Path] | None,
              ) -> tuple[tuple[AdapterUse, ...], list[dict[str, Any]], list[dict[str, str]]]:
    """The adapters to answer with, as recorded, and those left out with why.

    An adapter removed since it was chosen, changed on disk, or not made for the model now
    loaded is left out of this answer (and said so in its record), not the whole answer.
    """
    if not wanted or adapter_path is None:
        return (), [], []
    uses: list[AdapterUse] = []
    used: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for name, scale in wanted:
        try:
            uses.append(AdapterUse(str(adapter_path(name)), scale))
        except ModelError as error:
            skipped.append({"name": name, "reason": str(error)})
            continue
        used.append({"name": name, "scale": scale})
    return tuple(uses), used, skipped


def _passage_budget(engine: ChatEngine, config: AnswerConfig, question: str) -> int:
    info = engine.info
    n_ctx = int(info.n_ctx) if info else 2048
    reserve = min(int(config.sampling.max_tokens), n_ctx // 2)
    fixed = int(sum(engine.count_tokens([config.system_prompt, question]))) + config.budget.template_overhead
    history = int(n_ctx * config.budget.history_share)
    return max(0, n_ctx - reserve - fixed - history)


def _messages(system_prompt: str, history: Sequence[Turn], question: str, grounding: Grounding,
              mode: Mode) -> list[dict[str, str]]:
    turns = [
        {"role": t["role"], "content": t["content"]}
        for t in history[-HISTORY_TURNS:]
        if t.get("role") in ("user", "assistant") and t.get("content")
    ]
    return [
        {"role": "system", "content": system_prompt},
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
