"""The lab's question set: JSONL, one question per line, checked line by line before any model loads.

Each line is an object with ``question`` (text), ``answers`` (a list of acceptable strings),
optionally ``id`` (unique), ``source`` (the file the answer is in), ``unanswerable`` (true
when the documents do not hold the answer; its ``answers`` may then be empty) and ``match``.
Blank lines are skipped; other keys are kept for the record but not used.

``match`` says how an answer is judged right:

- ``"contains"`` (the default): the answer contains one of ``answers`` (normalised: case,
  punctuation and articles ignored). Right for short gold strings: "4417", "Marta Quell".
- ``"f1"``: ``answers`` are whole answers — e.g. an answer the user marked good in a chat
  (``bastion lab questions-from-chats``) — which no new answer repeats word for word. The answer
  is right when its SQuAD token F1 against one of them reaches ``metrics.F1_THRESHOLD`` (0.5:
  roughly half the words in common, both ways) and it does not decline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.errors import BastionError
from bastion.desktop.lab.metrics import Match

MAX_BYTES = 64 * 1024 * 1024  # a question set, not a corpus


class QuestionSetError(BastionError):
    """The question set cannot be used; the message names the file, the line and the reason."""


@dataclass(frozen=True)
class Question:
    """One question of the set."""

    id: str
    question: str
    answers: tuple[str, ...]
    unanswerable: bool = False
    source: str | None = None
    line: int = 0
    match: Match = "contains"


@dataclass(frozen=True)
class QuestionSet:
    """The questions of one file, in file order, with the file's SHA-256 (what a run is tied to)."""

    path: Path
    questions: list[Question]
    sha256: str

    @property
    def answerable(self) -> int:
        """How many questions have an answer in the documents."""
        return sum(not q.unanswerable for q in self.questions)


def load_questions(path: Path) -> QuestionSet:
    """Read and check a question set.

    Raises:
        QuestionSetError: the file cannot be read, is empty, or a line is not a valid question
            (the first such line is named, with why).
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise QuestionSetError(f"Cannot read the question set {path}: {error.strerror or error}.") from error
    if len(raw) > MAX_BYTES:
        raise QuestionSetError(f"The question set {path} is larger than {MAX_BYTES >> 20} MB.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise QuestionSetError(f"{path} is not UTF-8 text (byte {error.start}).") from error
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        question = parse_line(line, number, path)
        if question.id in seen:
            raise QuestionSetError(f"{path} line {number}: the id {question.id!r} is already used "
                                   f"on line {seen[question.id]}; ids must be unique.")
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise QuestionSetError(f"The question set {path} has no questions.")
    return QuestionSet(path=path, questions=questions, sha256=hashlib.sha256(raw).hexdigest())


def parse_line(line: str, number: int, path: Path | str = "questions") -> Question:
    """One JSONL line as a ``Question``; ``number`` (1-based) names it in errors.

    Raises:
        QuestionSetError: the line is not a valid question.
    """
    where = f"{path} line {number}"
    try:
        row: Any = json.loads(line)
    except ValueError as error:
        raise QuestionSetError(f"{where}: not valid JSON ({error}).") from error
    if not isinstance(row, dict):
        raise QuestionSetError(f"{where}: expected an object like "
                               '{"question": "...", "answers": ["..."]}.')
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        missing = "question" not in row
        raise QuestionSetError(f"{where}: " + ("the field 'question' is missing." if missing
                                               else "'question' must be non-empty text."))
    unanswerable = row.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise QuestionSetError(f"{where}: 'unanswerable' must be true or false.")
    if "answers" not in row:
        raise QuestionSetError(f"{where}: the field 'answers' is missing (a list of acceptable "
                               "answers; [] with \"unanswerable\": true for a question the "
                               "documents cannot answer).")
    answers = row["answers"]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise QuestionSetError(f"{where}: 'answers' must be a list of strings.")
    answers = [a.strip() for a in answers if a.strip()]
    if not answers and not unanswerable:
        raise QuestionSetError(f"{where}: 'answers' is empty: give at least one acceptable "
                               "answer, or mark the question \"unanswerable\": true.")
    source = row.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise QuestionSetError(f"{where}: 'source' must be a file name or path.")
    match = row.get("match", "contains")
    if match not in ("contains", "f1"):
        raise QuestionSetError(f"{where}: 'match' must be \"contains\" (a gold string in the "
                               "answer) or \"f1\" (whole gold answers, judged by token F1).")
    qid = row.get("id", f"line-{number}")
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not qid.strip():
        raise QuestionSetError(f"{where}: 'id' must be non-empty text or a number.")
    return Question(id=qid.strip(), question=question.strip(), answers=tuple(answers),
                    unanswerable=unanswerable, source=source.strip() if source else None,
                    line=number, match=match)
