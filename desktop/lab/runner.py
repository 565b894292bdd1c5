"""The lab's answering loop: every question through every arm, by ``answer_once``.

A generator of progress events (the CLI prints them, the window would show them): each answer
is appended to the run folder before its event is yielded, so closing the generator or killing
the process loses at most the answer in progress, and the next run asks only what is missing.
Questions go round the arms one by one, so a run stopped early still compares every arm on the
same questions. Answers are made as the chat's are, without a chat: nothing is stored but the run
folder's records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.desktop.answering import AnswerConfig, ChatEngine, answer_once
from bastion.desktop.grounding import Hit, RetrievalPolicy, Retriever
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.costs import engine_rss_mb
from bastion.desktop.lab.metrics import Passage, Scores, score
from bastion.desktop.lab.questions import Question
from bastion.desktop.lab.run_folder import AnswerRecord, RunFolder
from bastion.models.engine_types import Sampling


@dataclass
class RecordingRetriever:
    """Wraps a retriever to keep the full text of every passage found for the current answer
    (stored chat answers keep only a snippet; ``bench/squad_bench.py`` scores citations on the
    whole passage; ``answer_once`` records carry the full texts themselves)."""

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
    policy: RetrievalPolicy = field(default_factory=RetrievalPolicy)


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
    started = time.monotonic()
    answered = 0
    for question, arm in todo:
        if should_stop is not None and should_stop():
            break
        record = answer_one(parts, question, arm, plan.collection, should_stop)
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
                 question.unanswerable, question.source, match=question.match)


def answer_one(parts: LabParts, question: Question, arm: Arm, collection: str | None,
               should_stop: Callable[[], bool] | None = None) -> AnswerRecord | None:
    """Answer ``question`` as ``arm``; None if the answer did not complete (``should_stop``
    said so: the engine is told to stop at the next event)."""
    collections = (collection,) if arm.uses_documents and collection else ()
    config = AnswerConfig(mode=arm.mode, collections=collections, adapters=arm.adapters,
                          sampling=parts.sampling, system_prompt=parts.system_prompt,
                          policy=parts.policy)
    started = time.perf_counter()
    with answer_once(question.question, config, parts.engine, parts.retriever,
                     adapter_path=parts.adapter_path) as stream:
        for _event in stream:
            if should_stop is not None and should_stop():
                # Asked at each event, from this thread: a stop that came before generation
                # began (during retrieval) reaches the engine once its request is running.
                parts.engine.cancel()
    seconds = time.perf_counter() - started
    made = stream.record
    if made is None or not made.complete:
        return None
    passages = [
        Passage(n=s.n, path=s.path, page=s.page, cited=s.cited, cited_by=s.cited_by, text=text)
        for s, text in zip(made.sources, made.passage_texts, strict=True)
    ]
    stats = made.stats
    generated = stats.generated_tokens if stats else 0
    searched = made.query is not None
    return AnswerRecord(
        question_id=question.id, arm=arm.key, answer=made.text, not_found=made.not_found,
        passages=passages, seconds=round(seconds, 3),
        retrieval_ms=round(made.retrieval_ms, 1) if searched else None,
        time_to_first_token_s=round(stats.time_to_first_token_s, 3) if stats and generated else None,
        generation_tps=round(stats.generation_tps, 1) if stats and generated else None,
        generated_tokens=generated, prompt_tokens=stats.prompt_tokens if stats else 0,
        finish_reason=stats.finish_reason if stats else None,
        engine_rss_mb=engine_rss_mb(parts.engine), answered_at=round(time.time(), 3),
    )
