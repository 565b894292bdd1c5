"""Calibrate the relevance floor: which retrieved passages are relevant enough to answer from.

    .venv/bin/python bench/relevance_floor_bench.py [--data ../shared/data/squad2-dev-subset]
        [--nfcorpus ../shared/data/nfcorpus] [--answerable 300] [--off-index 300] [--seed 0]

In docs mode a question none of whose passages pass ``RetrievalPolicy`` gets the abstention
sentence without asking the model. This script measures that rule on questions nobody tuned it on.

The SQuAD 2.0 articles are split into a train and a test half by the SHA-256 of their titles
(``bench/lab_squad_questions.py``); each half is indexed as its own collection, as a user's folder
would be. Questions:

- answerable: SQuAD questions about that half's articles (the gold article is known);
- off-index: NFCorpus queries (medical, asked of Wikipedia articles about Normans, EU law, …)
  and handwritten everyday questions, split in two by the SHA-256 of their text.

Every question is searched once (``k`` of the default policy, as the assistant does) and every
rule is applied to the recorded hits, so the table costs one search per question. Rules: a passage
passes when its cosine similarity reaches ``floor``, or when it also matched the query's words
(BM25) and reaches ``floor - discount``. The rule is chosen on the train half by the highest
balanced accuracy (mean of answerable kept and off-index refused; ties go to the lower floor, which
refuses less), then checked once on the test half. Prints Markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_squad_questions import split_titles  # noqa: E402 - a sibling script

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad2-dev-subset"
DEFAULT_NFCORPUS = ROOT.parent / "shared" / "data" / "nfcorpus"
FLOORS = [0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60]
DISCOUNTS = [0.0, 0.10, 0.15]

# Everyday questions about nothing in the 16 articles (cooking, sport, home, money, music…).
HANDWRITTEN = [
    "How do I make sourdough bread rise more?",
    "What is a good stretching routine before running?",
    "How do I fix a flat tire on a bicycle?",
    "What temperature should I roast a chicken at?",
    "How often should I water a cactus?",
    "What does leg before wicket mean in cricket?",
    "How do I set up a Python virtual environment?",
    "What's the best way to remove a red wine stain from a carpet?",
    "How much should I tip a taxi driver in Japan?",
    "What is the difference between a latte and a cappuccino?",
    "How do I train my puppy to stop biting?",
    "Which houseplants are safe for cats?",
    "How do I knit a scarf as a beginner?",
    "What is a Roth IRA and who can open one?",
    "How long should I boil an egg for a runny yolk?",
    "What is the plot of Pride and Prejudice?",
    "How do I tune a guitar to drop D?",
    "How do I unclog a kitchen sink without chemicals?",
    "What is the offside rule in football?",
    "Which wine goes well with salmon?",
    "How do I write a cover letter for a job application?",
    "What are the signs of a dead car battery?",
    "How do I grow tomatoes on a balcony?",
    "How many calories are in a banana?",
    "What is the best time of year to visit Iceland?",
    "How do I turn a JPEG into a PDF on a Mac?",
    "What is the capital of Australia?",
    "Who won the 2014 FIFA World Cup?",
    "How do I fold a paper airplane that flies far?",
    "What does a sommelier do?",
    "How do I clean a cast iron pan?",
    "What is the tallest mountain in Africa?",
    "How do I meditate to relieve stress?",
    "How many syllables does a haiku have?",
    "How do I fold a fitted sheet?",
    "What is the life cycle of a butterfly?",
    "How do I play a C major chord on the piano?",
    "What are the ingredients of guacamole?",
    "How should I train for my first marathon?",
    "What is the difference between baking soda and baking powder?",
]


@dataclass(frozen=True)
class Probe:
    """One question and what the search found for it (the hits in rank order)."""

    kind: str  # "answerable", "nfcorpus" or "handwritten"
    question: str
    gold_file: str = ""
    answers: tuple[str, ...] = ()
    # Per hit: (cosine similarity or None, matched words (BM25), file name, holds a gold answer)
    hits: tuple[tuple[float | None, bool, str, bool], ...] = ()


@dataclass(frozen=True)
class Rule:
    floor: float
    discount: float

    @property
    def with_terms(self) -> float:
        return round(self.floor - self.discount, 2)

    def passes(self, similarity: float | None, matched: bool) -> bool:
        s = similarity if similarity is not None else 0.0
        return s >= self.floor or (matched and s >= self.with_terms)

    def name(self) -> str:
        if not self.discount:
            return f"cosine ≥ {self.floor:.2f}"
        return f"cosine ≥ {self.floor:.2f}, or ≥ {self.with_terms:.2f} with BM25 match"


PREVIOUS = Rule(0.35, 0.15)  # the defaults before issue #13: 0.35, or 0.20 with a BM25 match


@dataclass(frozen=True)
class Score:
    kept: tuple[int, int]
    gold_article: tuple[int, int]
    gold_answer: tuple[int, int]
    refused_nf: tuple[int, int]
    refused_hand: tuple[int, int]

    @property
    def refused(self) -> tuple[int, int]:
        return (self.refused_nf[0] + self.refused_hand[0], self.refused_nf[1] + self.refused_hand[1])

    @property
    def balanced(self) -> float:
        return (_share(self.kept) + _share(self.refused)) / 2


def _share(pair: tuple[int, int]) -> float:
    return pair[0] / pair[1] if pair[1] else 0.0


def score(rule: Rule, probes: Sequence[Probe]) -> Score:
    kept = gold_article = gold_answer = answerable = 0
    refused = {"nfcorpus": 0, "handwritten": 0}
    asked = {"nfcorpus": 0, "handwritten": 0}
    for probe in probes:
        passing = [h for h in probe.hits if rule.passes(h[0], h[1])]
        if probe.kind == "answerable":
            answerable += 1
            kept += bool(passing)
            gold_article += any(h[2] == probe.gold_file for h in passing)
            gold_answer += any(h[3] for h in passing)
        else:
            asked[probe.kind] += 1
            refused[probe.kind] += not passing
    return Score((kept, answerable), (gold_article, answerable), (gold_answer, answerable),
                 (refused["nfcorpus"], asked["nfcorpus"]), (refused["handwritten"], asked["handwritten"]))


def pct(pair: tuple[int, int]) -> str:
    return f"{100 * pair[0] / pair[1]:.1f}% ({pair[0]}/{pair[1]})" if pair[1] else "–"


HEADER = ("| rule | answerable kept | gold article among kept passages | gold answer among kept passages "
          "| off-index refused | of which NFCorpus | of which handwritten | balanced |\n"
          "|---|---|---|---|---|---|---|---|")


def row(label: str, s: Score) -> str:
    return (f"| {label} | {pct(s.kept)} | {pct(s.gold_article)} | {pct(s.gold_answer)} | {pct(s.refused)} "
            f"| {pct(s.refused_nf)} | {pct(s.refused_hand)} | {100 * s.balanced:.1f}% |")


def choose(rules: Sequence[Rule], probes: Sequence[Probe]) -> Rule:
    """Highest balanced accuracy; ties go to the lower floor, then the smaller discount."""
    return max(rules, key=lambda r: (round(score(r, probes).balanced, 6), -r.floor, -r.discount))


def halves(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """(calibration, test): split by the SHA-256 of each text, independent of order and seed."""
    first = [t for t in items if hashlib.sha256(t.encode("utf-8")).digest()[0] % 2 == 0]
    taken = set(first)
    return first, [t for t in items if t not in taken]


def probe_all(library: Any, collection: str, questions: Sequence[dict[str, Any]], k: int) -> list[Probe]:
    probes = []
    for q in questions:
        hits = library.search(q["question"], [collection], k=k)
        answers = tuple(a.lower() for a in q.get("answers", ()))
        probes.append(Probe(
            kind=q["kind"], question=q["question"], gold_file=q.get("gold_file", ""), answers=answers,
            hits=tuple((h.vector_score, h.bm25_score is not None, Path(h.path).name,
                        any(a in h.text.lower() for a in answers)) for h in hits)))
    return probes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--nfcorpus", type=Path, default=DEFAULT_NFCORPUS)
    parser.add_argument("--answerable", type=int, default=300, help="answerable questions per half")
    parser.add_argument("--off-index", type=int, default=300, help="NFCorpus queries per half")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = [json.loads(line) for line in (args.data / "qa.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    train_titles, test_titles = split_titles(r["title"] for r in rows)
    nf_all = sorted({json.loads(line)["text"] for line in
                     (args.nfcorpus / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()})
    nf_train, nf_test = halves(nf_all)
    hand_train, hand_test = halves(HANDWRITTEN)
    rng = random.Random(args.seed)

    def questions(titles: Sequence[str], nf: Sequence[str], hand: Sequence[str]) -> list[dict[str, Any]]:
        pool = [r for r in rows if r["title"] in set(titles) and not r["is_impossible"]]
        picked = rng.sample(pool, min(args.answerable, len(pool)))
        out: list[dict[str, Any]] = [
            {"kind": "answerable", "question": r["question"], "answers": r["answers"],
             "gold_file": Path(r["article_file"]).name} for r in picked]
        out += [{"kind": "nfcorpus", "question": t} for t in rng.sample(list(nf), min(args.off_index, len(nf)))]
        out += [{"kind": "handwritten", "question": t} for t in hand]
        return out

    home = Path(tempfile.mkdtemp(prefix="bastion-floor-"))
    os.environ["BASTION_HOME"] = str(home)
    import bastion.desktop  # noqa: F401 - offline environment first
    from bastion.desktop.app import App
    from bastion.desktop.grounding import RetrievalPolicy
    from bastion.desktop.library import add_collection

    k = RetrievalPolicy().k
    try:
        with App() as app:
            library = app.library
            started = time.perf_counter()
            for name, titles in (("train", train_titles), ("test", test_titles)):
                folder = home / f"{name}-articles"
                folder.mkdir()
                for file in sorted({r["article_file"] for r in rows if r["title"] in set(titles)}):
                    shutil.copyfile(args.data / file, folder / Path(file).name)
                add_collection(library, name, [folder])
                for _ in library.sync(name):
                    pass
            index_s = time.perf_counter() - started
            print(f"indexed both halves in {index_s:.0f} s", file=sys.stderr)
            train = probe_all(library, "train", questions(train_titles, nf_train, hand_train), k)
            test = probe_all(library, "test", questions(test_titles, nf_test, hand_test), k)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    rules = [Rule(f, d) for d in DISCOUNTS for f in FLOORS if f - d > 0]
    chosen = choose(rules, train)
    policy = RetrievalPolicy()
    defaults = Rule(policy.min_similarity, round(policy.min_similarity - policy.min_similarity_with_terms, 2))

    def count(probes: Sequence[Probe], kind: str) -> int:
        return sum(p.kind == kind for p in probes)

    print(f"Relevance floor on SQuAD 2.0 (dev subset): top {k} hybrid hits per question (all-MiniLM-L6-v2 "
          f"cosine, FTS5 BM25), seed {args.seed}. A question is refused when no hit passes the rule.\n")
    print(f"**Train half** ({', '.join(train_titles)}): {count(train, 'answerable')} answerable questions, "
          f"{count(train, 'nfcorpus')} NFCorpus queries, {count(train, 'handwritten')} handwritten questions.\n")
    print(HEADER)
    for rule in rules:
        print(row(rule.name() + (" ← chosen" if rule == chosen else ""), score(rule, train)))
    print(f"\n**Test half** ({', '.join(test_titles)}): {count(test, 'answerable')} answerable questions, "
          f"{count(test, 'nfcorpus')} NFCorpus queries, {count(test, 'handwritten')} handwritten questions.\n")
    print(HEADER)
    print(row(f"chosen: {chosen.name()}", score(chosen, test)))
    print(row(f"RetrievalPolicy defaults: {defaults.name()}", score(defaults, test)))
    print(row(f"before #13: {PREVIOUS.name()}", score(PREVIOUS, test)))
    print(f"\nchosen on the train half by balanced accuracy: min_similarity={chosen.floor:.2f}, "
          f"min_similarity_with_terms={chosen.with_terms:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
