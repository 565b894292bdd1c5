"""Lab jobs for the window's threads, and the Lab page's plain-data helpers.

A run is a core-thread job over the same use case as ``bastion lab run``
(``desktop.lab.session.run_session``): it answers with the ``App`` that owns the engine and
with the model the window has active, so there is one model in memory, and chat answers wait
their turn while a run goes (its timings stay clean too). Listing runs and computing a report
only read run folders: those jobs run in the page's own thread, so a past run's report opens
while another run is answering. Nothing here imports Qt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.desktop.grounding import MODES, Mode
from bastion.desktop.gui.core_tasks import CoreSession, JobLike
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.chat_questions import questions_from_chats, write_question_set
from bastion.desktop.lab.report import report_again
from bastion.desktop.lab.run_folder import RunFolder
from bastion.desktop.lab.runner import LabAnswered, LabFinished, LabStarted, duration
from bastion.desktop.lab.runs import RunListing, RunReport, list_runs, load_report
from bastion.desktop.lab.session import DEFAULT_MAX_TOKENS, LabChecked, LabRequest, run_session
from bastion.desktop.paths import DataPaths


@dataclass(frozen=True)
class LabForm:
    """What the page's form asks for (``bastion lab run``'s arguments, minus the folder: the
    window's runs live in the data folder, one per experiment, so the same form continues)."""

    questions: Path
    collection: str | None = None
    adapters: tuple[tuple[str, float], ...] = ()
    modes: tuple[Mode, ...] = MODES
    limit: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class ArmsDone:
    """How many answers each arm had recorded when the run (re)started: arm key → count."""

    done: dict[str, int]


def run_lab(session: CoreSession, job: JobLike, form: LabForm, runs_dir: Path) -> Iterator[object]:
    """Check the form's inputs (before any model loads), then answer and report; the session's
    events, plus ``ArmsDone`` after ``LabStarted``.

    Cancel is polled at every token: the answer in progress is cut short (asked again next
    time), the run ends with ``LabFinished`` and the worker closes this generator.
    """
    request = LabRequest(questions=form.questions, collection=form.collection,
                         adapters=form.adapters, model=session.active_model, limit=form.limit,
                         modes=form.modes, max_tokens=form.max_tokens, runs_dir=runs_dir)
    for event in run_session(session.app, request, should_stop=lambda: job.cancelled):
        yield event
        if isinstance(event, LabStarted):
            done: dict[str, int] = {}
            for record in RunFolder(event.folder).answers(repair=False):
                done[record.arm] = done.get(record.arm, 0) + 1
            yield ArmsDone(done)


def questions_from_marked(session: CoreSession, job: JobLike, out: Path) -> tuple[Path, int]:
    """Write the answers marked good as a question set at ``out`` (the user confirmed replacing
    it in the save dialog); the file and how many questions it holds."""
    rows = questions_from_chats(session.app.chats)
    write_question_set(rows, out, replace=True)
    return out, len(rows)


def runs(paths: DataPaths, job: JobLike, extra: Sequence[Path] = ()) -> list[RunListing]:
    """The runs in the data folder and those opened by hand, newest first."""
    return list_runs(paths.lab_dir, extra)


def report(paths: DataPaths, job: JobLike, folder: Path) -> RunReport:
    """A run's figures and answers (bootstrap intervals: a moment's work, off the GUI thread)."""
    return load_report(folder)


def html_report(paths: DataPaths, job: JobLike, folder: Path) -> Path:
    """Write the run's report files again from its answers; the HTML file's path."""
    return report_again(RunFolder(folder)).html


@dataclass
class ArmCount:
    arm: Arm
    total: int
    done: int = 0
    right: int = 0  # of the answers made since the page started the run


@dataclass
class RunProgress:
    """A running lab as the page shows it: answers per arm, overall progress and ETA."""

    folder: Path | None = None
    arms: list[ArmCount] = field(default_factory=list)
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    loading: str | None = None  # the model file being loaded
    resumed: bool = False

    def add(self, event: object) -> bool:
        """Take in a session event; True if the progress shown changed."""
        if isinstance(event, LabChecked):
            self.folder, self.resumed = event.folder, event.resumed
            self.arms = [ArmCount(arm, event.questions) for arm in event.arms]
            self.total = event.questions * len(event.arms)
            self.loading = event.model_file.name
        elif isinstance(event, LabStarted):
            self.loading = None
            self.done, self.total = event.already_done, event.total
        elif isinstance(event, ArmsDone):
            for count in self.arms:
                count.done = min(count.total, event.done.get(count.arm.key, 0))
        elif isinstance(event, LabAnswered):
            self.done, self.total, self.eta_s = event.done, event.total, event.eta_s
            for count in self.arms:
                if count.arm.key == event.arm.key:
                    count.done += 1
                    count.right += event.scores.correct
        elif isinstance(event, LabFinished):
            self.eta_s = None
        else:
            return False
        return True

    def status_line(self) -> str:
        """E.g. "12 of 20 answers · about 1 min 05 s left"."""
        if self.loading is not None:
            return (f"{'Continuing' if self.resumed else 'Starting'} the run: loading "
                    f"{self.loading}…")
        if not self.total:
            return ""
        line = f"{self.done} of {self.total} answers"
        if self.eta_s is not None and self.done < self.total:
            line += f" · about {duration(self.eta_s)} left"
        return line


def outcome(progress: RunProgress, *, failed: bool, cancelled: bool) -> str:
    """What the page says when a run ends."""
    where = progress.folder.name if progress.folder is not None else "the run"
    if failed:
        return "The run stopped with an error; the answers it made are kept."
    if progress.total and progress.done >= progress.total:
        return f"Finished: {progress.done} answers in {where}. Its report is shown below."
    if cancelled or progress.done < progress.total:
        return (f"Stopped at {progress.done} of {progress.total} answers; they are kept. Run "
                "again with the same choices to continue.")
    return "Not started."
