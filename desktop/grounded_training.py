"""Grounded (RAFT) training data from a question set and a collection.

Each question of a question set (the lab's format: ``question``, ``answers``, optional
``unanswerable``) is searched in the user's collections the way ``ask`` searches; the retrieved
passages that hold an acceptable answer are its evidence, the others its distractors, and
``models.finetune_data.grounded_examples`` turns them into training conversations in the exact
prompt layout of a documents-mode answer. Questions whose answer retrieval does not surface are
left out and counted: the adapter learns from what retrieval really gives it.

The answer taught is, by default, the sentence of the evidence passage that holds the answer
("sentence"), with its citation: extractive Q/A sets give spans ("France"), and a model taught
spans answers in fragments. ``answer_style="as-given"`` keeps the set's first answer.
``answer_style="citation-first"`` teaches the same sentence with its citation in front
("[2] The Normans were in Normandy in the 10th and 11th centuries."): every answering target then
starts with "[", and answering no longer loses to the abstention sentence, which always starts the
same way, whenever the answer's first word is uncertain.

Passages are trimmed to the sentences the question needs exactly as an answer's are
(``desktop.passage_focus``, ``sentences`` per passage), so the adapter learns on the prompts it
will see; a question whose answer the trimming drops from every passage is left out like one
retrieval missed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from bastion.desktop import grounding
from bastion.desktop.errors import BastionError
from bastion.desktop.lab.questions import Question, QuestionSet
from bastion.desktop.passage_focus import FocusPolicy, focus_passages
from bastion.models.finetune_data import (
    GroundedPrompt,
    GroundedStats,
    Passage,
    QAPair,
    grounded_examples,
    write_chat_jsonl,
)

AnswerStyle = Literal["sentence", "as-given", "citation-first"]
ANSWER_STYLES: tuple[AnswerStyle, ...] = ("sentence", "as-given", "citation-first")
Search = Callable[[str], Sequence[grounding.Hit]]

# A sentence longer than this teaches copying paragraphs: the answer as given is taught instead.
MAX_SENTENCE_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class GroundedOptions:
    """How examples are built.

    Attributes:
        passages: passages shown per example (the answer's and distractors), like the few an
            answer gets in the app.
        k: passages retrieved per question, to find evidence and distractors among.
        abstention_fraction: share of examples teaching the abstention sentence.
        answer_style: "sentence", "as-given" or "citation-first" (see the module's description).
        seed: passage order and which questions abstain.
        sentences: sentences of each passage shown, as ``RetrievalPolicy.sentences`` (0: whole).
    """

    passages: int = 3
    k: int = 8
    abstention_fraction: float = 0.2
    answer_style: AnswerStyle = "sentence"
    seed: int = 0
    sentences: int = grounding.RetrievalPolicy().sentences

    def check(self) -> None:
        if not 1 <= self.passages <= self.k <= 50:
            raise BastionError("Grounded training needs 1 ≤ passages ≤ k ≤ 50.")
        if self.answer_style not in ANSWER_STYLES:
            raise BastionError(f"Unknown answer style {self.answer_style!r}: use one of "
                               f"{', '.join(ANSWER_STYLES)}.")
        if not 0 <= self.abstention_fraction <= 0.5:
            raise BastionError("The abstention share must be between 0 and 0.5: more teaches the "
                               "model to refuse questions it could answer.")
        if not 0 <= self.sentences <= 50:
            raise BastionError("Sentences per passage must be between 0 (whole passages) and 50.")


@dataclass
class GroundedData:
    """What was written, and why questions were left out."""

    path: Path
    examples: int
    questions: int
    not_retrieved: int  # answerable questions whose answer no retrieved passage holds
    stats: GroundedStats = field(default_factory=GroundedStats)

    def summary(self) -> str:
        s = self.stats
        text = (f"{self.examples} grounded examples from {self.questions} questions: "
                f"{s.answerable} answered from passages, {s.abstention} abstaining")
        if self.not_retrieved:
            text += (f"; {self.not_retrieved} questions left out because no retrieved passage "
                     "holds their answer")
        if s.unanswerable_left_out:
            text += f"; {s.unanswerable_left_out} unanswerable questions beyond the abstention share"
        return text


def app_prompt(system_prompt: str | None) -> GroundedPrompt:
    """The wording and layout of a documents-mode answer, as ``desktop.grounding`` builds it."""
    return GroundedPrompt(grounding.DOCS_INSTRUCTION, grounding.PASSAGES_HEADER,
                          grounding.NOT_FOUND_ANSWER, system_prompt=system_prompt)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def answer_sentence(text: str, answer: str) -> str | None:
    """The sentence of ``text`` holding ``answer`` (compared without case and punctuation)."""
    wanted = _norm(answer)
    for part in " ".join(text.split()).split("…"):  # a trimmed passage's gaps end sentences too
        for sentence in _SENTENCE_END.split(part.strip()):
            if wanted and wanted in _norm(sentence):
                return sentence.strip()
    return None


def _pair(question: Question, hits: Sequence[grounding.Hit], options: GroundedOptions) -> QAPair | None:
    texts = focus_passages(question.question, [h.text for h in hits], FocusPolicy(sentences=options.sentences))
    passages = [Passage(text, h.path, h.page) for h, text in zip(hits, texts, strict=True)]
    if question.unanswerable:
        return QAPair(question.question, "", (), tuple(passages[: options.passages]), answerable=False)
    evidence = [a for a in question.answers if _norm(a)]
    holding = [p for p in passages if any(_norm(a) in _norm(p.text) for a in evidence)]
    if not holding:
        return None
    best = holding[0]  # the highest-ranked passage holding an answer
    answer = next(a for a in evidence if _norm(a) in _norm(best.text))
    if options.answer_style in ("sentence", "citation-first"):
        sentence = answer_sentence(best.text, answer)
        if sentence and len(sentence.split()) <= MAX_SENTENCE_WORDS:
            answer = sentence
    others = tuple(p for p in passages if p not in holding)
    return QAPair(question.question, answer, (best,), others, evidence=tuple(evidence))


def build_grounded_data(questions: QuestionSet, search: Search, out: Path, *,
                        system_prompt: str | None, options: GroundedOptions | None = None,
                        progress: Callable[[int, int], None] | None = None) -> GroundedData:
    """Retrieve for every question and write the training conversations to ``out`` (chat JSONL),
    with a ``.json`` beside it recording the question set, options and counts.

    Raises:
        BastionError: no question could be used (nothing retrieved holds any answer).
    """
    options = options or GroundedOptions()
    options.check()
    pairs: list[QAPair] = []
    not_retrieved = 0
    total = len(questions.questions)
    for done, question in enumerate(questions.questions, start=1):
        pair = _pair(question, list(search(question.question))[: options.k], options)
        if pair is None:
            not_retrieved += 1
        else:
            pairs.append(pair)
        if progress:
            progress(done, total)
    stats = GroundedStats()
    examples = grounded_examples(
        pairs, app_prompt(system_prompt), distractors=options.passages - 1,
        abstention_fraction=options.abstention_fraction,
        citation_first=options.answer_style == "citation-first", seed=options.seed, stats=stats)
    if not any(e.kind == "grounded" for e in examples):
        raise BastionError(
            f"None of the {total} questions in {questions.path.name} has its answer in a passage "
            "retrieved from the collection: check that the collection holds the documents the "
            "questions are about (`bastion library status`).")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_chat_jsonl(out, examples)
    data = GroundedData(out, len(examples), total, not_retrieved, stats)
    record = {"questions": str(questions.path), "questions_sha256": questions.sha256,
              "options": asdict(options), "question_count": total, "examples": len(examples), "not_retrieved": not_retrieved,
              "answerable": stats.answerable, "abstention": stats.abstention,
              "unanswerable_left_out": stats.unanswerable_left_out,
              "data_sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return data


def reusable_grounded_data(out: Path, questions_sha256: str, options: GroundedOptions) -> GroundedData | None:
    """The data written before at ``out`` from the same question set and options, if intact."""
    try:
        record = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        intact = hashlib.sha256(out.read_bytes()).hexdigest() == record["data_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not intact or record.get("questions_sha256") != questions_sha256 or record.get("options") != asdict(options):
        return None
    stats = GroundedStats(answerable=record["answerable"], abstention=record["abstention"],
                          unanswerable_left_out=record["unanswerable_left_out"])
    return GroundedData(out, record["examples"], record["question_count"], record["not_retrieved"], stats)
