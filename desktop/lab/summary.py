"""From recorded answers to figures per arm, comparisons between arms and a recommendation.

Everything here is computed from the run's own answers: accuracy with a bootstrap interval per
arm, paired bootstrap intervals on the differences that answer the usual questions (what do the
documents add, what does each adapter add, does "both" mode beat "docs" mode), and a recommended
route — the cheapest arm not measurably less accurate than the best one.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.metrics import Scores
from bastion.desktop.lab.questions import Question
from bastion.desktop.lab.run_folder import AnswerRecord
from bastion.desktop.lab.runner import score_record
from bastion.desktop.lab.stats import Interval, bootstrap_difference, bootstrap_mean


@dataclass(frozen=True)
class Rate:
    """k of n, shown as "18% (36/200)", or "–" when n is 0."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    def __str__(self) -> str:
        return f"{100 * self.k / self.n:.0f}% ({self.k}/{self.n})" if self.n else "–"


@dataclass(frozen=True)
class ScoredAnswer:
    """A recorded answer with its question and scores."""

    question: Question
    record: AnswerRecord
    scores: Scores


@dataclass(frozen=True)
class ArmSummary:
    """One arm's figures over the questions it answered."""

    arm: Arm
    answered: int
    accuracy: Interval | None
    contains_gold: Rate  # answerable questions
    f1: float | None  # mean over answerable questions
    cites: Rate  # answers given passages that cite one
    cites_marker: Rate  # … with an [n] marker
    citation_hit: Rate  # answerable answers that cite: a cited passage holds the answer
    abstention: Rate  # unanswerable questions declined
    false_abstention: Rate  # answerable questions declined
    seconds: float | None  # mean wall time per answer
    ttft_s: float | None
    tokens_per_s: float | None
    retrieval_ms: float | None
    engine_rss_mb: float | None  # highest seen


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``baseline`` on the questions both answered: what ``subject`` adds."""

    subject: str  # "Documents", "The adapter legal", "Both mode"
    plural: bool
    arm: Arm
    baseline: Arm
    difference: Interval

    def sentence(self) -> str:
        """The comparison in words, e.g. "Documents add 14 points [8, 20] (… vs …)."."""
        d, s = self.difference, "" if self.plural else "s"
        pair = f"({self.arm.label} vs {self.baseline.label})"
        size = f"{abs(100 * d.estimate):.0f} points [{100 * d.low:.0f}, {100 * d.high:.0f}]".replace("-", "−")
        if d.contains_zero:
            return f"{self.subject} make{s} no measurable difference {pair}: {d.points()}."
        if d.estimate > 0:
            return f"{self.subject} add{s} {size} {pair}."
        return f"{self.subject} lower{s} accuracy by {size} {pair}."


@dataclass(frozen=True)
class LabSummary:
    """Everything the report shows: per-arm figures, comparisons, the recommendation."""

    arms: list[ArmSummary]
    comparisons: list[Comparison]
    recommendation: list[str]
    answered: int
    expected: int
    questions: int


def scored_answers(questions: Sequence[Question], records: Sequence[AnswerRecord]) -> list[ScoredAnswer]:
    """Each record with its question and scores (records of unknown questions are left out)."""
    by_id = {q.id: q for q in questions}
    return [ScoredAnswer(by_id[r.question_id], r, score_record(by_id[r.question_id], r))
            for r in records if r.question_id in by_id]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarise_arm(arm: Arm, answers: Sequence[ScoredAnswer], seed: int = 0) -> ArmSummary:
    """The figures of ``arm`` over its scored ``answers``."""
    mine = [a for a in answers if a.record.arm == arm.key]
    answerable = [a for a in mine if not a.question.unanswerable]
    unanswerable = [a for a in mine if a.question.unanswerable]
    grounded = [a for a in mine if a.record.passages]
    citing = [a for a in answerable if a.scores.citation_hit is not None]
    rss = [a.record.engine_rss_mb for a in mine if a.record.engine_rss_mb is not None]
    return ArmSummary(
        arm=arm, answered=len(mine),
        accuracy=bootstrap_mean([a.scores.correct for a in mine], seed=seed),
        contains_gold=Rate(sum(bool(a.scores.contains_gold) for a in answerable), len(answerable)),
        f1=_mean([a.scores.f1 for a in answerable]),
        cites=Rate(sum(a.scores.cites for a in grounded), len(grounded)),
        cites_marker=Rate(sum(a.scores.cites_marker for a in grounded), len(grounded)),
        citation_hit=Rate(sum(bool(a.scores.citation_hit) for a in citing), len(citing)),
        abstention=Rate(sum(a.scores.abstained for a in unanswerable), len(unanswerable)),
        false_abstention=Rate(sum(a.scores.abstained for a in answerable), len(answerable)),
        seconds=_mean([a.record.seconds for a in mine]),
        ttft_s=_mean([a.record.time_to_first_token_s for a in mine]),
        tokens_per_s=_mean([a.record.generation_tps for a in mine]),
        retrieval_ms=_mean([a.record.retrieval_ms for a in mine]),
        engine_rss_mb=max(rss) if rss else None,
    )


def compare(arm: Arm, baseline: Arm, answers: Sequence[ScoredAnswer], seed: int = 0) -> Interval | None:
    """Paired bootstrap interval of accuracy(arm) − accuracy(baseline) on the questions both
    answered; None when they share none."""
    a = {x.question.id: x.scores.correct for x in answers if x.record.arm == arm.key}
    b = {x.question.id: x.scores.correct for x in answers if x.record.arm == baseline.key}
    shared = [q for q in a if q in b]
    return bootstrap_difference([a[q] for q in shared], [b[q] for q in shared], seed=seed)


def comparisons(arms: Sequence[Arm], answers: Sequence[ScoredAnswer], seed: int = 0) -> list[Comparison]:
    """The differences that answer the decision questions, for the arms present."""
    by_key = {a.key: a for a in arms}
    adapter_sets = list(dict.fromkeys(a.adapters for a in arms))
    pairs: list[tuple[str, bool, Arm, Arm]] = []
    for adapters in adapter_sets:  # what the documents add, to the base and to each adapter
        model, docs, both = (by_key.get(Arm(m, adapters).key) for m in ("model", "docs", "both"))
        grounded = docs or both
        if model and grounded:
            pairs.append(("Documents", True, grounded, model))
    for adapters in adapter_sets:  # what each adapter adds, in each mode
        if not adapters:
            continue
        name = " + ".join(n for n, _ in adapters)
        for mode in ("model", "docs", "both"):
            mine, base = by_key.get(Arm(mode, adapters).key), by_key.get(Arm(mode, ()).key)
            if mine and base:
                pairs.append((f"The adapter {name}", False, mine, base))
    for adapters in adapter_sets:  # "both" mode (documents and the model's own knowledge)
        docs, both = by_key.get(Arm("docs", adapters).key), by_key.get(Arm("both", adapters).key)
        if docs and both:
            pairs.append(("Both mode", False, both, docs))
    result = []
    for subject, plural, arm, baseline in pairs:
        interval = compare(arm, baseline, answers, seed)
        if interval is not None:
            result.append(Comparison(subject, plural, arm, baseline, interval))
    return result


# A route is worth choosing for its cost only when it is clearly cheaper: less to build and
# keep, or this much less time per answer (timings on a shared machine vary by more than 10%).
CLEARLY_FASTER = 0.8


def _upkeep(arm: Arm) -> tuple[int, bool]:
    """What a route needs beyond the base model: adapters to train and keep, an index to build."""
    return (len(arm.adapters), arm.uses_documents)


def _cost_key(summary: ArmSummary) -> tuple[int, bool, float]:
    return (*_upkeep(summary.arm), summary.seconds if summary.seconds is not None else 0.0)


def clearly_cheaper(a: ArmSummary, b: ArmSummary) -> bool:
    """Whether route ``a`` costs clearly less than ``b``: less upkeep, or at the same upkeep at
    most ``CLEARLY_FASTER`` of its time per answer."""
    if _upkeep(a.arm) != _upkeep(b.arm):
        return _upkeep(a.arm) < _upkeep(b.arm)
    return a.seconds is not None and b.seconds is not None and a.seconds <= CLEARLY_FASTER * b.seconds


# Accuracy credits a declined unanswerable question: an arm that declines most answerable
# questions too can top the table by refusing everything (a grounded adapter trained with a
# fifth of abstentions did: 97 % declined where it should, 90 % where it should not).
MAX_FALSE_ABSTENTION = 0.5


def declines_too_often(summary: ArmSummary) -> bool:
    """Whether ``summary``'s arm declined more than ``MAX_FALSE_ABSTENTION`` of the answerable
    questions, so that its accuracy says more about refusing than answering."""
    rate = summary.false_abstention.value
    return rate is not None and rate > MAX_FALSE_ABSTENTION


def recommend(arms: Sequence[ArmSummary], answers: Sequence[ScoredAnswer],
              found: Sequence[Comparison], seed: int = 0) -> list[str]:
    """Sentences recommending a route, each resting on a measurement of this run."""
    measured = [s for s in arms if s.accuracy is not None]
    if not measured:
        return ["No answers are recorded yet: nothing to recommend."]
    refusing = [s for s in measured if declines_too_often(s)]
    if refusing and len(refusing) < len(measured):
        excluded = [f"{s.arm.label} wrongly declined {s.false_abstention} of the answerable questions"
                    for s in refusing]
        lines = recommend([s for s in measured if not declines_too_often(s)], answers, found, seed)
        return [lines[0], "Not recommended whatever its accuracy, which comes from declining "
                "rather than answering: " + "; ".join(excluded) + ".", *lines[1:]]
    if all(s.accuracy.estimate == 0 for s in measured if s.accuracy):
        return ["No arm answered any question correctly, so this run cannot tell the routes "
                "apart. Check that the collection holds the documents the questions are about "
                "(`bastion library status`) and that the gold answers are written as the "
                "documents write them."]
    # The most accurate arm; among equals, the cheapest.
    best = min(measured, key=lambda s: (-(s.accuracy.estimate if s.accuracy else 0.0), _cost_key(s)))
    ties = []
    for other in measured:
        if other is best:
            continue
        gap = compare(best.arm, other.arm, answers, seed)
        if gap is not None and gap.contains_zero:
            ties.append((other, gap))
    cheaper = [t for t, _ in ties if clearly_cheaper(t, best)]
    choice = min(cheaper, key=_cost_key) if cheaper else best
    lines = []
    acc = choice.accuracy.percent() if choice.accuracy else "–"
    if choice is best:
        lines.append(f"Recommended route: **{choice.arm.label}** — the most accurate arm "
                     f"(accuracy {acc}).")
    else:
        gap = next(g for t, g in ties if t is choice)
        best_acc = best.accuracy.percent() if best.accuracy else "–"
        lines.append(f"Recommended route: **{choice.arm.label}** — the cheapest arm not measurably "
                     f"less accurate than the most accurate one, {best.arm.label} ({gap.points()}: "
                     f"the interval contains 0). Accuracy {acc} against {best_acc}; "
                     f"{_cost_words(choice, best)}.")
    if choice is best and ties:
        lines.append("Not measurably different from it: " + ", ".join(t.arm.label for t, _ in ties) + ".")
    lines.extend(c.sentence() for c in found)
    if choice.abstention.n:
        lines.append(f"On questions the documents cannot answer, {choice.arm.label} declined "
                     f"{choice.abstention}; it wrongly declined {choice.false_abstention} of the "
                     "answerable ones.")
    if choice.citation_hit.n:
        lines.append(f"When it cites, the cited passage holds the answer in {choice.citation_hit} "
                     f"of answers; it cites with an [n] marker in {choice.cites_marker}.")
    widths = [100 * (c.difference.high - c.difference.low) / 2 for c in found]
    if widths and statistics.median(widths) >= 1:
        n = max(c.difference.n for c in found)
        lines.append(f"With {n} questions per comparison, differences smaller than about "
                     f"±{statistics.median(widths):.0f} points cannot be told apart here; "
                     "more questions narrow the intervals.")
    return lines


def _cost_words(cheap: ArmSummary, dear: ArmSummary) -> str:
    words = []
    if len(cheap.arm.adapters) < len(dear.arm.adapters):
        words.append("no adapter to train and keep")
    if not cheap.arm.uses_documents and dear.arm.uses_documents:
        words.append("no index to build and keep")
    if cheap.seconds is not None and dear.seconds is not None:
        words.append(f"{cheap.seconds:.1f} s per answer against {dear.seconds:.1f} s")
    return "; ".join(words) or "no more costly"


def summarise(questions: Sequence[Question], arms: Sequence[Arm], records: Sequence[AnswerRecord],
              seed: int = 0) -> LabSummary:
    """Figures per arm, comparisons and the recommendation for the answers recorded so far."""
    answers = scored_answers(questions, records)
    per_arm = [summarise_arm(arm, answers, seed) for arm in arms]
    found = comparisons(arms, answers, seed)
    lines = recommend(per_arm, answers, found, seed)
    asked = {a.question.id for a in answers}
    expected = len(asked) * len(arms)
    if len(answers) < expected:
        lines.append(f"This run is incomplete ({len(answers)} of {expected} answers for the "
                     f"{len(asked)} questions reached): continue it with the same `bastion lab run`.")
    return LabSummary(arms=per_arm, comparisons=found, recommendation=lines, answered=len(answers),
                      expected=expected, questions=len(asked))
