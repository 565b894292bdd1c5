"""Scoring one answer against its question: gold strings, token F1, citations, abstention.

SQuAD-style normalisation (lower case, no punctuation, no articles, single spaces) is applied
to answers, gold strings and passages alike. ``bench/squad_bench.py`` scores with these too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from bastion.desktop.grounding import is_abstention

Match = Literal["contains", "f1"]
# With "match": "f1", an answer is right when its token F1 against a gold answer reaches this:
# e.g. half its words in common with a two-sentence gold answer of about its length.
F1_THRESHOLD = 0.5
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]")
_CITATION_MARKER = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")


def normalise(text: str) -> str:
    """Lower case, punctuation and English articles removed, whitespace collapsed."""
    text = _ARTICLES.sub(" ", text.lower())
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


def strip_citations(text: str) -> str:
    """``text`` without its citation markers ("[1]", "[1, 2]") and the space before them."""
    text = re.sub(r"[ \t]*" + _CITATION_MARKER.pattern, "", text)
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def contains_gold(text: str, answers: Sequence[str]) -> bool:
    """Whether ``text`` contains any of ``answers`` once both are normalised.

    A gold string that normalises to nothing (e.g. "the") never matches.
    """
    norm = normalise(text)
    for answer in answers:
        gold = normalise(answer)
        if gold and re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", norm):
            return True
    return False


def token_f1(text: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 of ``text`` against the best-matching gold answer (0 when there is none).

    Citation markers ("[1]", "[1, 2]") are not words of the answer and are left out.
    """
    predicted = normalise(_CITATION_MARKER.sub(" ", text)).split()
    best = 0.0
    for answer in answers:
        gold = normalise(answer).split()
        if not gold or not predicted:
            continue
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common == 0:
            continue
        precision, recall = common / len(predicted), common / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def same_source(path: str, source: str) -> bool:
    """Whether a passage's file ``path`` is the question's gold ``source``.

    ``source`` may be a file name ("Normans.txt") or a trailing part of a path
    ("articles/Normans.txt"); it matches when its path components end ``path``.
    """
    want = PurePath(source).parts
    have = PurePath(path).parts
    return bool(want) and have[-len(want):] == want


@dataclass(frozen=True)
class Passage:
    """A passage an answer was given, with its full text and whether the answer cites it."""

    n: int
    path: str
    text: str
    cited: bool
    cited_by: str = ""  # "marker" ([n] written) or "overlap" (restated without a marker)
    page: int | None = None


def citation_hit(passages: Sequence[Passage], answers: Sequence[str], source: str | None) -> bool | None:
    """Whether a cited passage comes from the gold ``source`` or contains a gold string.

    None when the answer cites nothing (there is no citation to judge).
    """
    cited = [p for p in passages if p.cited]
    if not cited:
        return None
    return any((source is not None and same_source(p.path, source)) or contains_gold(p.text, answers)
               for p in cited)


def abstained(text: str, not_found: bool) -> bool:
    """Whether the answer declines: the assistant found nothing, or the model said so."""
    return not_found or is_abstention(text)


@dataclass(frozen=True)
class Scores:
    """One answer's scores. Fields that do not apply to the question are None.

    ``correct`` is what accuracy counts: an answerable question answered with a gold string
    (or, for a question matched by F1, with a token F1 of at least ``F1_THRESHOLD``), or an
    unanswerable one declined.
    """

    correct: bool
    abstained: bool
    contains_gold: bool | None  # answerable questions only
    f1: float | None  # answerable questions only
    cites: bool  # some passage is marked cited (by [n] or by overlap)
    cites_marker: bool  # some passage is cited with an [n] marker
    citation_hit: bool | None  # answerable questions whose answer cites something


def score(text: str, not_found: bool, passages: Sequence[Passage], answers: Sequence[str],
          unanswerable: bool, source: str | None = None, *, match: Match = "contains") -> Scores:
    """Score one answer.

    Args:
        text: The answer as stored.
        not_found: The assistant answered "not found" without asking the model.
        passages: The passages the answer was given (none in model mode).
        answers: The acceptable gold strings.
        unanswerable: The question has no answer in the documents.
        source: The file the answer comes from, if the question set names it.
        match: "contains" (a gold string must appear in the answer) or "f1" (the gold answers
            are whole answers: token F1 of at least ``F1_THRESHOLD`` counts as right).
    """
    declined = abstained(text, not_found)
    cites = any(p.cited for p in passages)
    marker = any(p.cited and p.cited_by == "marker" for p in passages)
    if unanswerable:
        return Scores(correct=declined, abstained=declined, contains_gold=None, f1=None,
                      cites=cites, cites_marker=marker, citation_hit=None)
    gold = contains_gold(text, answers)
    f1 = token_f1(text, answers)
    correct = f1 >= F1_THRESHOLD and not declined if match == "f1" else gold
    return Scores(correct=correct, abstained=declined, contains_gold=gold, f1=f1,
                  cites=cites, cites_marker=marker,
                  citation_hit=citation_hit(passages, answers, source))
