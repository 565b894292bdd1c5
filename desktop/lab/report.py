"""The lab's report files, made from a run folder: Markdown, HTML, and every answer as CSV and JSON.

``write_reports`` can run at any time — during a run, after a kill, or long after — since it
reads only the run folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.lab.freshness_report import FreshnessSection, freshness_section
from bastion.desktop.lab.report_html import render_html, section_html
from bastion.desktop.lab.run_folder import RunFolder, RunInfo
from bastion.desktop.lab.summary import (
    ArmSummary,
    LabSummary,
    ScoredAnswer,
    scored_answers,
    summarise,
)

FRESHNESS_TITLE = "Freshness: changed facts asked again"
ACCURACY_MEANS = ("Accuracy counts an answerable question as right when the answer contains a "
                  "gold string (normalised: case, punctuation and articles ignored), and an "
                  "unanswerable one as right when the answer declines (a question marked "
                  "\"match\": \"f1\" holds whole gold answers and is right at a token F1 of "
                  "0.5 or more). Intervals are 95% "
                  "bootstrap intervals; differences are paired (the same questions in both arms).")


@dataclass(frozen=True)
class ReportFiles:
    """The files written into a run folder, and the summary they show."""

    markdown: Path
    html: Path
    csv: Path
    json: Path
    summary: LabSummary


def write_reports(folder: RunFolder, seed: int = 0) -> ReportFiles:
    """Write report.md, report.html, answers.csv and answers.json into the run folder.

    Raises:
        BastionError: the folder is not a lab run.
    """
    info = folder.info()
    questions = folder.questions().questions
    answers = scored_answers(questions, folder.answers(repair=False))  # a run may be appending
    summary = summarise(questions, info.arms, [a.record for a in answers], seed)
    header = header_lines(info, summary, answers)
    files = ReportFiles(folder.path / "report.md", folder.path / "report.html",
                        folder.path / "answers.csv", folder.path / "answers.json", summary)
    fresh = freshness_section(folder.path, info.arms, answers, seed)
    _write(files.markdown, render_markdown(header, summary, info, fresh))
    extra = section_html(FRESHNESS_TITLE, fresh.table, fresh.lines) if fresh else ""
    _write(files.html, render_html(header, summary, arm_table(summary), difference_table(summary),
                                   cost_lines(info, summary), answers, ACCURACY_MEANS, extra))
    rows = [answer_row(a, info) for a in answers]
    _write(files.csv, _csv(rows))
    _write(files.json, json.dumps({"run": info.to_json(), "arms": [_arm_json(s) for s in summary.arms],
                                   "recommendation": summary.recommendation,
                                   "answers": [{**row, "passages": [asdict(p) for p in a.record.passages]}
                                               for row, a in zip(rows, answers, strict=True)]},
                                  indent=1, ensure_ascii=False) + "\n")
    return files


def report_again(folder: RunFolder) -> ReportFiles:
    """The report files of a run folder made again from its answers, with the run's own seed
    (``bastion lab report``, and the window's "Open the HTML report").

    Raises:
        BastionError: the folder is not a lab run.
    """
    return write_reports(folder, seed=run_seed(folder.info()))


def run_seed(info: RunInfo) -> int:
    """The seed a run sampled and bootstrapped with."""
    return int(info.sampling.get("seed") or 0)


def header_lines(info: RunInfo, summary: LabSummary, answers: Sequence[ScoredAnswer]) -> list[str]:
    """The run in a few lines: what was asked, of what, with which model and settings."""
    asked = {a.question.id: a.question for a in answers}
    unanswerable = sum(q.unanswerable for q in asked.values())
    sampling = info.sampling
    return [
        f"Question set `{Path(info.questions_file).name}`: {summary.questions} questions "
        f"({summary.questions - unanswerable} answerable, {unanswerable} unanswerable), "
        f"{summary.answered} answers across {len(info.arms)} arms.",
        f"Model {info.model}; collection {info.collection or '– (no documents)'}; greedy, "
        f"seed {sampling.get('seed')}, at most {sampling.get('max_tokens')} answer tokens.",
        (f"Started {time.strftime('%Y-%m-%d %H:%M', time.localtime(info.created))}; " if info.created
         else "") + f"report made {time.strftime('%Y-%m-%d %H:%M')}.",
    ]


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def arm_table(summary: LabSummary) -> list[list[str]]:
    """The per-arm table, header first."""
    rows = [["arm", "accuracy [95% CI]", "contains gold", "token F1", "citation hit", "cites with [n]",
             "abstention (unanswerable)", "false abstention", "s / answer", "first token",
             "tokens/s", "engine RAM"]]
    for s in summary.arms:
        rows.append([s.arm.label, s.accuracy.percent() if s.accuracy else "–", str(s.contains_gold),
                     _fmt(s.f1, ".2f"), str(s.citation_hit), str(s.cites_marker), str(s.abstention),
                     str(s.false_abstention), _fmt(s.seconds, ".1f", " s"), _fmt(s.ttft_s, ".2f", " s"),
                     _fmt(s.tokens_per_s, ".0f"), _fmt(s.engine_rss_mb, ".0f", " MB")])
    return rows


def difference_table(summary: LabSummary) -> list[list[str]]:
    """The comparisons table (paired differences), header first."""
    rows = [["what", "arm", "against", "difference [95% CI]", "questions", "measurable"]]
    for c in summary.comparisons:
        rows.append([c.subject, c.arm.label, c.baseline.label, c.difference.points(),
                     str(c.difference.n), "no" if c.difference.contains_zero else "yes"])
    return rows


def cost_lines(info: RunInfo, summary: LabSummary | None = None) -> list[str]:
    """What each route costs besides time per answer: the base model's file, the index (build
    time, size), each adapter (training time, size) and the engine's memory."""
    costs, lines = info.costs, []
    model = costs.get("model") or {}
    if model.get("bytes"):
        lines.append(f"Base model {info.model}: {_mb(model['bytes'])} file.")
    collection = costs.get("collection") or {}
    if collection:
        size = (f"{_mb(collection['index_bytes'])} of passages and vectors"
                if collection.get("index_bytes") is not None else "size not recorded")
        lines.append(f"Index (collection {collection.get('name')}): "
                     f"{collection.get('documents', '?')} documents, "
                     f"{collection.get('chunks', '?')} passages, {size} (the library file holds "
                     f"{_mb(collection.get('library_bytes') or 0)} for all collections); "
                     f"build time {_seconds(collection.get('index_build_s'))}.")
    for name, adapter in (costs.get("adapters") or {}).items():
        sha = adapter.get("sha256")
        trained = adapter.get("training_s")
        lines.append(f"Adapter {name}: {_mb(adapter.get('bytes') or 0)} file"
                     + (f", SHA-256 {sha[:16]}…" if sha else "") + "; training time "
                     + (f"{_seconds(trained)} (from its training record)" if trained is not None
                        else "not recorded (no training record beside it)") + ".")
    rss = (costs.get("engine") or {}).get("rss_mb_after_load")
    peaks = [s.engine_rss_mb for s in summary.arms if s.engine_rss_mb is not None] if summary else []
    if rss is not None or peaks:
        lines.append("Engine memory (RSS): "
                     + (f"{rss:.0f} MB once the model was loaded" if rss is not None else "")
                     + ("; " if rss is not None and peaks else "")
                     + (f"up to {max(peaks):.0f} MB while answering" if peaks else "") + ".")
    else:
        lines.append("Engine memory (RSS): not recorded.")
    lines.append("How fast each route reflects a change in the documents: `bastion lab freshness` "
                 "measures it.")
    return lines


def _seconds(value: float | None) -> str:
    if value is None:
        return "not recorded (the library keeps no record of sync durations)"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.0f} min"


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 // 10 else f"{size / 2**10:.0f} KB"


def _md_table(rows: list[list[str]]) -> list[str]:
    cells = [[c.replace("|", "\\|") for c in row] for row in rows]
    return (["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
            + ["| " + " | ".join(r) + " |" for r in cells[1:]])


def render_markdown(header: list[str], summary: LabSummary, info: RunInfo,
                    fresh: FreshnessSection | None = None) -> str:
    """The report as Markdown (with the freshness section of a freshness run)."""
    lines = ["# Lab report", "", *header, "", "## Recommendation", ""]
    lines += [f"- {line}" for line in summary.recommendation]
    lines += ["", "## Arms", "", *_md_table(arm_table(summary)), "", ACCURACY_MEANS, ""]
    if summary.comparisons:
        lines += ["## Differences between arms", "", *_md_table(difference_table(summary)), ""]
    if fresh is not None:
        lines += [f"## {FRESHNESS_TITLE}", "", *_md_table(fresh.table), "",
                  *[f"- {line}" for line in fresh.lines], ""]
    lines += ["## Costs of each route", "", *[f"- {c}" for c in cost_lines(info, summary)], "",
              "Every answer: `answers.csv`, `answers.json`; charts: `report.html`.", ""]
    return "\n".join(lines)


def answer_row(answer: ScoredAnswer, info: RunInfo) -> dict[str, Any]:
    """One answer as a flat row (CSV and JSON)."""
    q, r, s = answer.question, answer.record, answer.scores
    arm = next((a for a in info.arms if a.key == r.arm), None)
    return {
        "question_id": q.id, "arm": r.arm, "arm_label": arm.label if arm else r.arm,
        "mode": arm.mode if arm else "", "question": q.question, "unanswerable": q.unanswerable,
        "gold": " | ".join(q.answers), "source": q.source or "", "answer": r.answer,
        "correct": s.correct, "contains_gold": s.contains_gold,
        "f1": None if s.f1 is None else round(s.f1, 4), "abstained": s.abstained,
        "cites": s.cites, "cites_marker": s.cites_marker, "citation_hit": s.citation_hit,
        "cited": " | ".join(p.path for p in r.passages if p.cited),
        "seconds": r.seconds, "time_to_first_token_s": r.time_to_first_token_s,
        "generation_tps": r.generation_tps, "generated_tokens": r.generated_tokens,
        "prompt_tokens": r.prompt_tokens, "retrieval_ms": r.retrieval_ms,
        "engine_rss_mb": r.engine_rss_mb,
    }


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def _arm_json(s: ArmSummary) -> dict[str, Any]:
    def rate(r: Any) -> dict[str, Any]:
        return {"k": r.k, "n": r.n, "rate": r.value}

    acc = s.accuracy
    return {
        "arm": s.arm.key, "label": s.arm.label, **s.arm.to_dict(), "answered": s.answered,
        "accuracy": None if acc is None else {"estimate": acc.estimate, "low": acc.low, "high": acc.high},
        "contains_gold": rate(s.contains_gold), "f1": s.f1, "citation_hit": rate(s.citation_hit),
        "cites": rate(s.cites), "cites_marker": rate(s.cites_marker),
        "abstention": rate(s.abstention), "false_abstention": rate(s.false_abstention),
        "seconds_per_answer": s.seconds, "time_to_first_token_s": s.ttft_s,
        "tokens_per_s": s.tokens_per_s, "retrieval_ms": s.retrieval_ms, "engine_rss_mb": s.engine_rss_mb,
    }


def _write(path: Path, text: str) -> None:
    # A name of its own per writer: the window may report a run while the run reports itself.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
