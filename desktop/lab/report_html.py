"""The lab report as one self-contained HTML file: text, tables, inline SVG charts, and each
question's answers side by side. No scripts, no external resources."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from bastion.desktop.lab.plots import Point, accuracy_bars, accuracy_vs_cost
from bastion.desktop.lab.summary import LabSummary, ScoredAnswer

_STYLE = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
details { margin: 0.4rem 0; }
summary { cursor: pointer; }
.right { color: #2a7d2a; } .wrong { color: #b22; }
.note { color: #555; font-size: 0.9rem; }
"""


def inline_markdown(text: str) -> str:
    """Escape, then render the Markdown the recommendation uses (**bold**, `code`)."""
    html = escape(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", html)


def _table(rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _answers_by_question(summary: LabSummary, answers: Sequence[ScoredAnswer]) -> str:
    labels = {s.arm.key: s.arm.label for s in summary.arms}
    order = {s.arm.key: i for i, s in enumerate(summary.arms)}
    grouped: dict[str, list[ScoredAnswer]] = {}
    for answer in answers:
        grouped.setdefault(answer.question.id, []).append(answer)
    parts = []
    for items in grouped.values():
        q = items[0].question
        gold = "unanswerable" if q.unanswerable else "gold: " + " | ".join(q.answers)
        right = sum(a.scores.correct for a in items)
        rows = []
        for a in sorted(items, key=lambda a: order.get(a.record.arm, 99)):
            verdict = '<span class="right">right</span>' if a.scores.correct else '<span class="wrong">wrong</span>'
            cited = ", ".join(f"[{p.n}] {p.path.rsplit('/', 1)[-1]}" for p in a.record.passages if p.cited)
            rows.append(f"<tr><td>{escape(labels.get(a.record.arm, a.record.arm))}</td>"
                        f"<td>{escape(a.record.answer)}</td><td>{verdict}</td><td>{escape(cited or '–')}</td>"
                        f"<td>{a.record.seconds:.1f} s</td></tr>")
        parts.append(
            f"<details><summary>{escape(q.id)}: {escape(q.question)} "
            f'<span class="note">({escape(gold)}; {right}/{len(items)} arms right)</span></summary>'
            "<table><thead><tr><th>arm</th><th>answer</th><th>verdict</th><th>cited</th><th>time</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")
    return "".join(parts)


def section_html(title: str, rows: Sequence[Sequence[str]], lines: Sequence[str]) -> str:
    """A titled section: a table (header first) and sentences below it."""
    return (f"<h2>{escape(title)}</h2>" + _table(rows)
            + "".join(f'<p class="note">{inline_markdown(line)}</p>' for line in lines))


def render_html(header: Sequence[str], summary: LabSummary, arm_rows: Sequence[Sequence[str]],
                difference_rows: Sequence[Sequence[str]], costs: Sequence[str],
                answers: Sequence[ScoredAnswer], accuracy_means: str, extra: str = "") -> str:
    """The whole report page.

    Args:
        header: Lines describing the run.
        summary: Figures, comparisons and recommendation.
        arm_rows: The per-arm table, header first.
        difference_rows: The comparisons table, header first.
        costs: One line per route cost.
        answers: Every scored answer (shown per question).
        accuracy_means: What "accuracy" counts.
        extra: Sections of HTML shown before the costs (e.g. ``section_html``'s).
    """
    points = [Point(s.arm.label, s.accuracy, s.seconds) for s in summary.arms]
    body = [
        "<h1>Lab report</h1>", *[f"<p>{inline_markdown(line)}</p>" for line in header],
        "<h2>Recommendation</h2><ul>", *[f"<li>{inline_markdown(line)}</li>" for line in summary.recommendation],
        "</ul><h2>Accuracy per arm</h2>", accuracy_bars(points),
        f'<p class="note">{escape(accuracy_means)}</p>',
        "<h2>Accuracy against cost</h2>", accuracy_vs_cost(points),
        "<h2>Arms</h2>", _table(arm_rows),
    ]
    if len(difference_rows) > 1:
        body += ["<h2>Differences between arms</h2>", _table(difference_rows)]
    body += [extra, "<h2>Costs of each route</h2><ul>", *[f"<li>{inline_markdown(c)}</li>" for c in costs], "</ul>",
             "<h2>Answers, question by question</h2>", _answers_by_question(summary, answers)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Bastion lab report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
