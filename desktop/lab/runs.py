"""Past lab runs as a window shows them: the list of run folders, a run's figures, and each
question's answers side by side across the arms.

Everything here only reads run folders (no model, no database, never repairs a file), so it is
safe in any thread, even while another thread's run is appending answers to the same folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bastion.desktop.errors import BastionError
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.questions import Question
from bastion.desktop.lab.report import run_seed
from bastion.desktop.lab.run_folder import RunFolder, RunInfo
from bastion.desktop.lab.summary import LabSummary, ScoredAnswer, scored_answers, summarise

QuestionFilter = Literal["all", "disagree", "wrong"]
FILTERS: dict[QuestionFilter, str] = {
    "all": "All questions",
    "disagree": "Where the arms disagree",
    "wrong": "Wrong in every arm",
}


@dataclass(frozen=True)
class RunListing:
    """One run folder in a list: what it compared and how far it got.

    ``error`` says why a folder that looks like a run cannot be read (its other fields are then
    placeholders).
    """

    path: Path
    questions_file: str
    collection: str | None
    model: str
    arms: tuple[Arm, ...]
    questions: int  # the run's questions (after its limit)
    answered: int
    created: float
    error: str | None = None

    @property
    def expected(self) -> int:
        return self.questions * len(self.arms)

    @property
    def finished(self) -> bool:
        return self.error is None and self.answered >= self.expected

    def title(self) -> str:
        """E.g. "capitals · atlas · 2026-12-03 08:41"."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created)) if self.created else ""
        parts = [Path(self.questions_file).stem or self.path.name,
                 self.collection or "no documents", when]
        return " · ".join(p for p in parts if p)

    def progress(self) -> str:
        """E.g. "300/300 answers, 3 arms" or "7/20 answers, 4 arms (stopped)"."""
        if self.error is not None:
            return "cannot be read"
        arms = f"{len(self.arms)} arm{'s' if len(self.arms) != 1 else ''}"
        return f"{self.answered}/{self.expected} answers, {arms}" + ("" if self.finished else
                                                                       " (not finished)")


def read_listing(path: Path) -> RunListing:
    """The listing of the run folder at ``path`` (a damaged one is listed with its error)."""
    folder = RunFolder(path)
    try:
        info = folder.info()
        asked = _asked(folder, info)
        done = {(r.question_id, r.arm) for r in folder.answers(repair=False)}
        keys = {a.key for a in info.arms}
        answered = sum(1 for q, arm in done if q in asked and arm in keys)
    except (BastionError, OSError) as error:
        return RunListing(path, "", None, "", (), 0, 0, 0.0, error=str(error))
    return RunListing(path, Path(info.questions_file).name, info.collection, info.model,
                      tuple(info.arms), len(asked), answered, info.created)


def _asked(folder: RunFolder, info: RunInfo) -> set[str]:
    return {q.id for q in folder.questions().questions[: info.limit]}


def list_runs(parent: Path, extra: Iterable[Path] = ()) -> list[RunListing]:
    """The run folders directly under ``parent`` and the folders ``extra`` (opened by hand),
    newest first."""
    paths: dict[Path, None] = {}
    if parent.is_dir():
        for child in parent.iterdir():
            if child.is_dir() and RunFolder(child).exists():
                paths[child.resolve()] = None
    for path in extra:
        paths[Path(path).resolve()] = None
    listings = [read_listing(p) for p in paths]
    return sorted(listings, key=lambda r: (-r.created, str(r.path)))


@dataclass(frozen=True)
class QuestionRow:
    """One question of a run with its answers in arm order (None: that arm has not answered)."""

    question: Question
    answers: tuple[ScoredAnswer | None, ...]

    @property
    def answered(self) -> list[ScoredAnswer]:
        return [a for a in self.answers if a is not None]

    @property
    def right(self) -> int:
        return sum(a.scores.correct for a in self.answered)

    @property
    def disagree(self) -> bool:
        """Some arm is right where another is wrong."""
        return 0 < self.right < len(self.answered)

    @property
    def wrong_everywhere(self) -> bool:
        return bool(self.answered) and self.right == 0

    def matches(self, which: QuestionFilter) -> bool:
        if which == "disagree":
            return self.disagree
        if which == "wrong":
            return self.wrong_everywhere
        return True


@dataclass(frozen=True)
class RunReport:
    """What the window shows of one run: its settings, figures, recommendation, and every
    question's answers by arm."""

    folder: Path
    info: RunInfo
    summary: LabSummary
    rows: list[QuestionRow]

    @property
    def arms(self) -> list[Arm]:
        return list(self.info.arms)

    def questions(self, which: QuestionFilter = "all") -> list[QuestionRow]:
        """The questions that pass the filter, in the question set's order."""
        return [row for row in self.rows if row.matches(which)]

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def load_report(path: Path) -> RunReport:
    """Read a run folder and compute its figures (the bootstrap takes a moment: a worker's job).

    Raises:
        BastionError: the folder is not a lab run, or its files are damaged.
    """
    folder = RunFolder(path)
    info = folder.info()
    asked = folder.questions().questions[: info.limit]
    answers = scored_answers(asked, folder.answers(repair=False))
    summary = summarise(asked, info.arms, [a.record for a in answers], run_seed(info))
    return RunReport(folder.path, info, summary, question_rows(asked, info.arms, answers))


def question_rows(questions: Sequence[Question], arms: Sequence[Arm],
                  answers: Sequence[ScoredAnswer]) -> list[QuestionRow]:
    """Each question some arm answered, with its answers in ``arms`` order."""
    by_pair = {(a.question.id, a.record.arm): a for a in answers}
    rows = []
    for question in questions:
        found = tuple(by_pair.get((question.id, arm.key)) for arm in arms)
        if any(a is not None for a in found):
            rows.append(QuestionRow(question, found))
    return rows
