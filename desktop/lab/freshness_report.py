"""The report's freshness section, for a run folder that holds ``freshness.json``.

Per arm: how often the answer follows the change (it gives the new value), keeps the old fact
(it gives the old value and not the new), or neither — each with a 95% bootstrap interval. Per
route: how long it takes to reflect a change (the re-sync measured by the run for the documents
routes, the adapter's training time from its training record for a fine-tuned route). And how
often the user's collection actually changed, from the library's records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.fact_changes import FactChange
from bastion.desktop.lab.freshness_history import history_sentence
from bastion.desktop.lab.metrics import contains_gold
from bastion.desktop.lab.stats import bootstrap_mean
from bastion.desktop.lab.summary import ScoredAnswer

FRESHNESS_FILE = "freshness.json"
MEANS = ("\"Follows the change\": the answer gives the new value written into the copy; \"keeps "
         "the old fact\": it gives the value the documents held before, and not the new one. "
         "Intervals are 95% bootstrap intervals over the changed questions.")


@dataclass(frozen=True)
class FreshnessSection:
    """The section's table (header first) and its sentences."""

    table: list[list[str]]
    lines: list[str]


def read_record(folder: Path) -> dict[str, Any] | None:
    """The freshness record of a run folder (None: not a freshness run, or unreadable)."""
    try:
        record = json.loads((folder / FRESHNESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _rate(values: Sequence[bool], seed: int) -> str:
    interval = bootstrap_mean([float(v) for v in values], seed=seed)
    if interval is None:
        return "–"
    return f"{interval.percent()} ({sum(values)}/{len(values)})"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


def reflect_time(arm: Arm, record: dict[str, Any]) -> str:
    """How long ``arm``'s route takes to reflect a change in the documents."""
    if arm.uses_documents:
        return (f"re-sync: {_duration(float(record.get('resync_s') or 0.0))} (measured now, "
                f"{record.get('changed_files', '?')} changed files)")
    if not arm.adapters:
        return "never by itself: the model alone does not read the documents"
    retrain = record.get("retrain_s") or {}
    parts = []
    for name, _scale in arm.adapters:
        seconds = retrain.get(name)
        parts.append(f"retrain: ~{max(1, round(float(seconds) / 60))} min (from its training record)"
                     if isinstance(seconds, int | float) else
                     f"retrain {name}: time not recorded (no training record beside it)")
    return "; ".join(parts)


def freshness_section(folder: Path, arms: Sequence[Arm], answers: Sequence[ScoredAnswer],
                      seed: int = 0) -> FreshnessSection | None:
    """The freshness section of the run in ``folder``; None when it is not a freshness run."""
    record = read_record(folder)
    if record is None:
        return None
    changes = {c.question_id: c for c in map(FactChange.from_json, record.get("changes", []))}
    table = [["arm", "follows the change [95% CI]", "keeps the old fact [95% CI]", "neither",
              "time to reflect a change"]]
    for arm in arms:
        mine = [a for a in answers if a.record.arm == arm.key and a.question.id in changes]
        follows = [contains_gold(a.record.answer, [changes[a.question.id].new]) for a in mine]
        keeps = [not f and contains_gold(a.record.answer, [changes[a.question.id].old])
                 for a, f in zip(mine, follows, strict=True)]
        neither = sum(not f and not k for f, k in zip(follows, keeps, strict=True))
        table.append([arm.label, _rate(follows, seed), _rate(keeps, seed),
                      f"{neither}/{len(mine)}", reflect_time(arm, record)])
    passed = ", ".join(f"{n} {reason}" for reason, n in (record.get("passed_over") or {}).items())
    lines = [
        f"{len(changes)} of the {record.get('candidates', '?')} questions whose gold fact could be "
        f"changed were changed (fraction {record.get('fraction')}, seed {record.get('seed')}) in a "
        f"copy of the collection {record.get('collection')!r} ({record.get('documents_copied', '?')} "
        "files); the collection and its folder were not touched."
        + (f" Passed over: {passed}." if passed else ""),
        f"Indexing the copy took {_duration(float(record.get('build_s') or 0.0))}; after the change, "
        f"re-syncing it took {_duration(float(record.get('resync_s') or 0.0))}.",
    ]
    history = record.get("history")
    if isinstance(history, dict):
        lines.append(history_sentence(history))
    lines.append(MEANS)
    return FreshnessSection(table, lines)
