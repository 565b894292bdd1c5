"""Trimming retrieved passages to the sentences a question needs, before they enter a prompt.

A chunk is a few hundred tokens; the answer to a question is usually one sentence of it. A small
model asked to answer from four whole chunks copies the wrong sentence often: on the SQuAD test
half the 135M default cited the right passage in 83% of answers but held the answer in a third.
So each passage is cut to its sentences that share the most (rarity-weighted) words with the
question, kept in their order, with "…" where sentences were left out; the sentence after the
best one comes along when there is room, since the answer often follows the sentence that names
the subject ("The Normans were … They were descended from …").

Only the prompt's copy is trimmed: the citation still points at the whole passage, whose full
text the window shows. Pure text work, no model: the same function builds the training prompts
of the grounded adapter (``desktop.grounded_training``), so both see passages alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.store.search import STOPWORDS

# A sentence ends at . ! or ? followed by space and a capital, digit, quote or bracket; a line
# break between two lines of text (headings, list items, table rows) also ends one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“(\[])|\s*\n\s*\n\s*|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_WORD = re.compile(r"\w+", re.UNICODE)
_STEM = 6  # words compared by their first letters: "Normans" finds "Normandy", "elected" "election"
GAP = " … "


@dataclass(frozen=True)
class FocusPolicy:
    """How much of each passage reaches the prompt.

    Args:
        sentences: Sentences kept per passage, best-matching first (0: passages go in whole).
        follow: Also keep the sentence after the best one, when the passage has it.
    """

    sentences: int = 2
    follow: bool = True

    @property
    def enabled(self) -> bool:
        return self.sentences > 0


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each with its inner whitespace collapsed; empty ones dropped."""
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


def _terms(text: str) -> set[str]:
    words = (w.lower() for w in _WORD.findall(text))
    return {w[:_STEM] for w in words if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def sentence_scores(question: str, split: Sequence[Sequence[str]]) -> list[list[float]]:
    """Each sentence's score: the summed rarity (log of 1 + sentences / sentences holding it,
    over all passages ``split``) of the question's words it holds."""
    wanted = _terms(question)
    held = [[_terms(s) & wanted for s in sentences] for sentences in split]
    counts: dict[str, int] = {}
    for passage in held:
        for terms in passage:
            for term in terms:
                counts[term] = counts.get(term, 0) + 1
    total = sum(len(s) for s in split) or 1
    weight = {term: math.log(1.0 + total / n) for term, n in counts.items()}
    return [[sum(weight[t] for t in terms) for terms in passage] for passage in held]


def focus_passages(question: str, texts: Sequence[str], policy: FocusPolicy = FocusPolicy()) -> list[str]:
    """Each of ``texts`` cut to the sentences most about ``question``, in their original order.

    A sentence scores the summed rarity (inverse sentence frequency over all ``texts``) of the
    question's words it holds. A passage with no sentence sharing a word keeps its opening
    sentences; a passage short enough to keep whole is returned as it was.
    """
    if not policy.enabled:
        return list(texts)
    split = [split_sentences(t) for t in texts]
    focused = []
    for text, sentences, scores in zip(texts, split, sentence_scores(question, split), strict=True):
        limit = policy.sentences + (1 if policy.follow else 0)
        if len(sentences) <= limit:
            focused.append(text)
            continue
        ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
        keep = set(ranked[: policy.sentences])
        if policy.follow and scores[ranked[0]] > 0 and ranked[0] + 1 < len(sentences):
            keep.add(ranked[0] + 1)
        focused.append(_join(sentences, sorted(keep)))
    return focused


def _join(sentences: Sequence[str], kept: Sequence[int]) -> str:
    out = ""
    for place, index in enumerate(kept):
        if place == 0:
            out = (GAP.lstrip() if index > 0 else "") + sentences[index]
        else:
            out += (" " if index == kept[place - 1] + 1 else GAP) + sentences[index]
    if kept and kept[-1] < len(sentences) - 1:
        out += GAP.rstrip()
    return out
