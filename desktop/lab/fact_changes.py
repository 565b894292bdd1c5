"""The freshness experiment's edits: which gold facts to change in a copy of the documents, and
to what.

A question can have its fact changed when it is answerable, names its ``source`` file, and one
of its gold answers is written, as a whole word, in that file's text. The new value is of the
same kind: a number (or any answer with digits) gets other digits, a year stays a plausible
year; a name (every word capitalised) becomes a made-up name with as many words. Other answers
("fish soup") are left alone: there is no way to invent a value of the same kind. Everything
is drawn from one ``random.Random(seed)``, so the same questions, files and seed give the same
changes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bastion.desktop.lab.metrics import same_source
from bastion.desktop.lab.questions import Question

Kind = Literal["number", "name"]
_DIGITS = re.compile(r"\d+")
_NAME_WORD = re.compile(r"[A-Z][\w'’-]*")
_SYLLABLES = ("ka", "lo", "ren", "vi", "dor", "ma", "zu", "tel", "bri", "os", "quin", "sa",
              "mer", "do", "fal", "ny", "gar", "eth", "wyn", "po")


@dataclass(frozen=True)
class FactChange:
    """One gold answer replaced in the copy: ``old`` by ``new`` in ``path`` (the original file)."""

    question_id: str
    path: str
    old: str
    new: str
    kind: Kind

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FactChange:
        return cls(str(raw["question_id"]), str(raw["path"]), str(raw["old"]), str(raw["new"]),
                   "name" if raw.get("kind") == "name" else "number")


@dataclass(frozen=True)
class ChangePlan:
    """The changes chosen, out of how many questions could have been changed, and why the others
    could not (reason → count)."""

    changes: list[FactChange]
    candidates: int
    passed_over: dict[str, int]


def answer_kind(answer: str) -> Kind | None:
    """``number`` for an answer with digits, ``name`` when every word is capitalised, else None."""
    if _DIGITS.search(answer):
        return "number"
    words = answer.split()
    if words and all(_NAME_WORD.fullmatch(w) for w in words):
        return "name"
    return None


def occurs(text: str, value: str) -> bool:
    """Whether ``value`` is written in ``text`` as a whole word (or words)."""
    return re.search(_bounded(value), text) is not None


def _bounded(value: str) -> str:
    return rf"(?<!\w){re.escape(value)}(?!\w)"


def _new_number(old: str, rng: random.Random) -> str:
    def other(match: re.Match[str]) -> str:
        digits = match.group()
        value = int(digits)
        if len(digits) == 4 and 1000 <= value <= 2099:  # a year stays a plausible year
            return str(min(2099, max(1000, value + rng.choice((-1, 1)) * rng.randint(3, 40))))
        first = str(rng.randint(1, 9)) if digits[0] != "0" or len(digits) == 1 else "0"
        return first + "".join(str(rng.randint(0, 9)) for _ in digits[1:])

    return _DIGITS.sub(other, old)


def _new_name(old: str, rng: random.Random) -> str:
    words = [("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))).capitalize()
             for _ in old.split()]
    return " ".join(words)


def new_value(old: str, kind: Kind, rng: random.Random, avoid: str = "") -> str:
    """A value of ``kind`` other than ``old`` that is not written in ``avoid`` (the file's text)."""
    make = _new_number if kind == "number" else _new_name
    for _ in range(100):
        value = make(old, rng)
        if value != old and not occurs(avoid, value) and value.lower() != old.lower():
            return value
    # A one-digit number may run out of other values that are absent from the file.
    return f"{old}{rng.randint(10, 99)}" if kind == "number" else f"{old} {make(old, rng)}"


def source_file(question: Question, paths: Sequence[str]) -> str | None:
    """The collection's file that is ``question``'s source (None when it names none or there is
    no such file)."""
    if not question.source:
        return None
    return next((p for p in paths if same_source(p, question.source)), None)


def plan_changes(questions: Sequence[Question], texts: Mapping[str, str | None], fraction: float,
                 seed: int) -> ChangePlan:
    """Choose ``fraction`` of the changeable questions (at least one if any) and their new values.

    Args:
        questions: The question set.
        texts: The text of each file of the collection by path (None: not plain text).
        fraction: The share of the changeable questions to change, in (0, 1].
        seed: The seed of every draw.
    """
    rng = random.Random(seed)
    passed: dict[str, int] = {}
    changeable: list[tuple[Question, str, str, Kind]] = []
    paths = list(texts)
    for q in questions:
        if q.unanswerable:
            continue
        path = source_file(q, paths)
        text = texts.get(path) if path else None
        reason = None
        if path is None:
            reason = "no source file in the collection"
        elif text is None:
            reason = "source is not a plain-text file"
        else:
            found = [a for a in q.answers if occurs(text, a)]
            kinds = [(a, answer_kind(a)) for a in found]
            usable = [(a, k) for a, k in kinds if k is not None]
            if not found:
                reason = "gold answer not written in its source"
            elif not usable:
                reason = "gold answer is neither a number nor a name"
            else:
                answer, kind = usable[0]
                changeable.append((q, path, answer, kind))
        if reason:
            passed[reason] = passed.get(reason, 0) + 1
    if not changeable:
        return ChangePlan([], 0, passed)
    count = min(len(changeable), max(1, round(fraction * len(changeable))))
    chosen = sorted(rng.sample(range(len(changeable)), count))
    passed_over = len(changeable) - count
    if passed_over:
        passed["not drawn"] = passed_over
    # One new value per (file, old value): two questions on one fact change it the same way.
    values: dict[tuple[str, str], str] = {}
    changes = []
    for index in chosen:
        q, path, old, kind = changeable[index]
        key = (path, old)
        if key not in values:
            values[key] = new_value(old, kind, rng, avoid=texts[path] or "")
        changes.append(FactChange(q.id, path, old, values[key], kind))
    return ChangePlan(changes, len(changeable), passed)


def apply_changes(text: str, changes: Sequence[FactChange]) -> str:
    """``text`` with every whole-word occurrence of each change's old value replaced, in one
    pass (longer values first, so "4417 North" wins over "4417", and a new value is never
    replaced again)."""
    values: dict[str, str] = {}
    for change in changes:
        values.setdefault(change.old, change.new)
    if not values:
        return text
    pattern = "|".join(_bounded(old) for old in sorted(values, key=len, reverse=True))
    return re.sub(pattern, lambda m: values[m.group()], text)
