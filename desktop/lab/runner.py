"""The lab's answering loop: every question through every arm, by the real assistant.

A generator of progress events (the CLI prints them, the window would show them): each answer
is appended to the run folder before its event is yielded, so closing the generator or killing
the process loses at most the answer in progress, and the next run asks only what is missing.
Questions go round the arms one by one, so a run stopped early still compares every arm on the
same questions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.desktop.assistant import AnswerDone, Assistant, ChatEngine, PassagesFound
from bastion.desktop.grounding import Hit, Retriever
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.costs import engine_rss_mb
from bastion.desktop.lab.metrics import Passage, Scores, score
from bastion.desktop.lab.questions import Question
from bastion.desktop.lab.run_folder import AnswerRecord, RunFolder
from bastion.models.engine_types import Sampling
from bastion.store.chats import ChatStore


@dataclass
class RecordingRetriever:
    """Wraps a retriever to keep the full text of every passage found for the current answer
    (stored answers keep only a snippet; citation hits need the whole passage)."""

    inner: Retriever
    hits: dict[tuple[str, int | None], str] = field(default_factory=dict)

    def search(self, query: str, collections: Sequence[str] | None, k: int) -> Sequence[Hit]:
        found = self.inner.search(query, collections, k)
        for hit in found:
            self.hits[(hit.path, hit.char_start)] = hit.text
        return found

    def text_of(self, path: str, char_start: int | None, default: str = "") -> str:
        """The full text of the passage found at (``path``, ``char_start``), else ``default``."""
        return self.hits.get((path, char_start), default)

    def reset(self) -> None:
        """Forget the passages of the previous answer."""
        self.hits.clear()


@dataclass(frozen=True)
class LabParts:
    """What answers are made with: the loaded engine, retrieval, adapters and the prompt.

    ``adapter_path`` maps an adapter's catalog name to its checked file (as in ``Assistant``).
    """

    engine: ChatEngine
    retriever: Retriever | None
    sampling: Sampling
    system_prompt: str
    adapter_path: Callable[[str], Path] | None = None


@dataclass(frozen=True)
class LabPlan:
    """What to answer: these questions, by these arms, searching ``collection``."""

    questions: list[Question]
    arms: list[Arm]
    collection: str | None


@dataclass(frozen=True)
class LabStarted:
    """The run begins; ``already_done`` answers were found from an earlier run."""

    total: int  # answers the plan asks for
    already_done: int  # found in the run folder from an earlier run
    folder: Path


@dataclass(frozen=True)
class LabAnswered:
    """One more answer recorded; ``eta_s`` is None until one answer has been timed."""

    done: int
    total: int
    question: Question
    arm: Arm
    record: AnswerRecord
    scores: Scores
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class LabFinished:
    """Every (question, arm) pair of the plan is answered (or the run stopped cleanly)."""

    folder: Path
    answered: int  # in this run
    total: int


LabEvent = LabStarted | LabAnswered | LabFinished


def greedy(sampling: Sampling, max_tokens: int, seed: int) -> Sampling:
    """``sampling`` made deterministic: temperature 0 (greedy), a fixed seed, ``max_tokens``."""
    return Sampling(**{**sampling.to_dict(), "temperature": 0.0, "seed": seed, "max_tokens": max_tokens})


def run_lab(plan: LabPlan, parts: LabParts, folder: RunFolder,
            should_stop: Callable[[], bool] | None = None) -> Iterator[LabEvent]:
    """Answer every (question, arm) pair not yet in ``folder``, recording each as it comes.

    The run folder must have been started (``RunFolder.start``). Yields ``LabStarted``, one
    ``LabAnswered`` per new answer, then ``LabFinished``. Once ``should_stop`` (polled from
    this generator's thread) says so, the answer being generated is cut short at its next token
    (not recorded: it is asked again next time) and the run finishes with what it has.
    """
    done = {(r.question_id, r.arm) for r in folder.answers()}
    pairs = [(q, arm) for q in plan.questions for arm in plan.arms]
    todo = [(q, arm) for q, arm in pairs if (q.id, arm.key) not in done]
    already = len(pairs) - len(todo)
    yield LabStarted(total=len(pairs), already_done=already, folder=folder.path)
    recorder = RecordingRetriever(parts.retriever) if parts.retriever is not None else None
    chats = ChatStore(folder.chats_db)
    try:
        assistant = Assistant(engine=parts.engine, chats=chats, retriever=recorder,
                              system_prompt=parts.system_prompt, sampling=parts.sampling,
                              adapter_path=parts.adapter_path)
        started = time.monotonic()
        answered = 0
        for question, arm in todo:
            if should_stop is not None and should_stop():
                break
            record = answer_one(assistant, chats, recorder, question, arm, plan.collection,
                                should_stop)
            if record is None:  # stopped mid-answer: asked again next time
                break
            folder.append(record)
            answered += 1
            elapsed = time.monotonic() - started
            remaining = len(todo) - answered
            yield LabAnswered(
                done=already + answered, total=len(pairs), question=question, arm=arm,
                record=record, scores=score_record(question, record), elapsed_s=elapsed,
                eta_s=elapsed / answered * remaining)
        yield LabFinished(folder=folder.path, answered=answered, total=len(pairs))
    finally:
        chats.close()


def duration(seconds: float | None) -> str:
    """An ETA or elapsed time as people say it: "45 s", "3 min 05 s", "2 h 07 min" ("?" if
    unknown)."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def score_record(question: Question, record: AnswerRecord) -> Scores:
    """The scores of a recorded answer to ``question``."""
    return score(record.answer, record.not_found, record.passages, question.answers,
                 question.unanswerable, question.source)


def answer_one(assistant: Assistant, chats: ChatStore, recorder: RecordingRetriever | None,
               question: Question, arm: Arm, collection: str | None,
               should_stop: Callable[[], bool] | None = None) -> AnswerRecord | None:
    """Ask ``question`` in a new chat set up as ``arm``; None if the answer did not complete
    (``should_stop`` said so: the engine is told to stop at the next event)."""
    collections = [collection] if arm.uses_documents and collection else []
    chat = chats.create_chat(title=f"{question.id} · {arm.label}"[:120], mode=arm.mode,
                             collections=collections, adapters=arm.adapters)
    if recorder is not None:
        recorder.reset()
    started = time.perf_counter()
    done: AnswerDone | None = None
    retrieval_ms: float | None = None
    for event in assistant.ask(chat.id, question.question):
        if isinstance(event, PassagesFound):
            retrieval_ms = event.retrieval_ms
        elif isinstance(event, AnswerDone):
            done = event
        elif should_stop is not None and should_stop():
            # Asked at each event, from this thread: a stop that came before generation began
            # (during retrieval) reaches the engine once its request is running.
            assistant.cancel()
    seconds = time.perf_counter() - started
    if done is None or done.message.status != "complete":
        return None
    message = done.message
    meta: dict[str, Any] = message.meta
    passages = [
        Passage(n=s.n, path=s.path, page=s.page, cited=s.cited, cited_by=s.cited_by,
                text=recorder.text_of(s.path, s.char_start, s.snippet) if recorder else s.snippet)
        for s in message.sources
    ]
    generated = int(meta.get("generated_tokens") or 0)
    return AnswerRecord(
        question_id=question.id, arm=arm.key, answer=message.content, not_found=done.not_found,
        passages=passages, seconds=round(seconds, 3),
        retrieval_ms=round(retrieval_ms, 1) if retrieval_ms is not None else None,
        time_to_first_token_s=meta.get("time_to_first_token_s") if generated else None,
        generation_tps=meta.get("generation_tps") if generated else None,
        generated_tokens=generated, prompt_tokens=int(meta.get("prompt_tokens") or 0),
        finish_reason=meta.get("finish_reason"), engine_rss_mb=engine_rss_mb(assistant.engine),
        chat_id=chat.id, answered_at=round(time.time(), 3),
    )

