"""The Lab page: compare routes (model alone, documents, adapters) on a question set, watch the
run, cancel and continue it, and read any run's report and answers side by side.

The run is ``bastion lab run``'s use case in the core thread (see ``lab_tasks``); its inputs
are checked before any model loads, and its errors are the use case's own sentences. The
window's runs live in the data folder (``lab/``), one folder per experiment, so running the
same choices again continues a stopped run. Reading runs and reports happens in the page's own
thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.errors import user_message
from bastion.desktop.grounding import MODES, Mode
from bastion.desktop.gui import lab_tasks as tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.lab_answers_view import AnswersPanel
from bastion.desktop.gui.lab_report_view import ReportPanel
from bastion.desktop.gui.workers import Job, Worker
from bastion.desktop.lab.runs import RunListing, RunReport
from bastion.desktop.lab.session import DEFAULT_MAX_TOKENS
from bastion.desktop.paths import DataPaths
from bastion.models.adapter_catalog import AdapterEntry

MODE_TEXT: dict[str, str] = {"model": "Model alone", "docs": "With documents",
                             "both": "Both mode"}
MODE_TIPS: dict[str, str] = {
    "model": "The model answers from what it knows.",
    "docs": "The model answers from the collection's passages only (or says it cannot).",
    "both": "The model answers from the passages and from what it knows.",
}
NO_DOCUMENTS = "None (model alone)"
PATH_ROLE = Qt.ItemDataRole.UserRole


class LabView(QWidget):
    """The form and the running run on the left; past runs, a run's report and its answers
    side by side on the right.

    Args:
        backend: runs the lab in its core thread and reports errors.
        paths: the data folder (runs in ``paths.lab_dir``).
        open_url: opens the HTML report (tests pass a recorder instead of a browser).
    """

    def __init__(self, backend: Backend, paths: DataPaths,
                 open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.paths = paths
        self.open_url = open_url
        self.worker = Worker(lambda: paths, None, "bastion-lab")
        self.state = "idle"  # idle, running, stopping
        self.progress_state = tasks.RunProgress()
        self.opened: list[Path] = []  # run folders opened by hand (outside the data folder)
        self.listings: list[RunListing] = []
        self.report: RunReport | None = None
        self._job: Job | None = None
        self._failed = False
        self._wanted: Path | None = None  # the run whose report should show when it arrives
        self._build()
        self._update()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        form_box = QGroupBox("Compare routes on your questions")
        form = QFormLayout(form_box)
        self.questions_edit = QLineEdit()
        self.questions_edit.setObjectName("labQuestionsFile")
        self.questions_edit.setPlaceholderText("question set .jsonl")
        self.questions_edit.setToolTip('One question per line: {"question": "…", "answers": '
                                       '["…"]}, optional "id", "source", "unanswerable": true.')
        self.questions_edit.textChanged.connect(lambda _t: self._update())
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self._ask_questions)
        self.marked_button = QPushButton("From marked answers…")
        self.marked_button.setToolTip("Make a question set from the chat answers you marked "
                                      "“✓ good answer” (scored by token F1).")
        self.marked_button.clicked.connect(self._ask_marked_questions)
        row = QHBoxLayout()
        row.addWidget(self.questions_edit, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.marked_button)
        form.addRow("Questions:", row)
        self.collection_combo = QComboBox()
        self.collection_combo.setObjectName("labCollection")
        self.collection_combo.addItem(NO_DOCUMENTS, None)
        self.collection_combo.currentIndexChanged.connect(lambda _i: self._update())
        form.addRow("Collection:", self.collection_combo)
        self.adapter_list = QListWidget()
        self.adapter_list.setObjectName("labAdapters")
        self.adapter_list.setMaximumHeight(90)
        self.adapter_list.setToolTip("Each adapter ticked is tried alone, in every mode ticked.")
        form.addRow("Adapters:", self.adapter_list)
        self.mode_boxes: dict[str, QCheckBox] = {}
        modes = QVBoxLayout()
        for mode in MODES:
            box = QCheckBox(MODE_TEXT[mode])
            box.setToolTip(MODE_TIPS[mode])
            box.setChecked(True)
            box.toggled.connect(lambda _on: self._update())
            self.mode_boxes[mode] = box
            modes.addWidget(box)
        form.addRow("Arms:", modes)
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all")  # shown for 0
        form.addRow("Questions to ask:", self.limit)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(DEFAULT_MAX_TOKENS)
        form.addRow("Answer tokens (max):", self.max_tokens)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("labRun")
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("labCancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        form.addRow(self.progress)
        self.status = QLabel("Answers are greedy and seeded, with the model loaded now. While a "
                             "run answers, the chat's answers wait for it.")
        self.status.setObjectName("labStatus")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.arm_progress = QLabel("")
        self.arm_progress.setObjectName("labArmProgress")
        self.arm_progress.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(self.arm_progress)
        form_box.setMaximumWidth(380)
        layout.addWidget(form_box, 0, Qt.AlignmentFlag.AlignTop)

        right = QSplitter(Qt.Orientation.Vertical)
        runs_box = QGroupBox("Runs")
        runs_column = QVBoxLayout(runs_box)
        self.run_list = QListWidget()
        self.run_list.setObjectName("labRuns")
        self.run_list.currentItemChanged.connect(lambda item, _old: self._pick(item))
        runs_column.addWidget(self.run_list, 1)
        runs_row = QHBoxLayout()
        self.open_folder_button = QPushButton("Open a run folder…")
        self.open_folder_button.setToolTip("A folder made by bastion lab run --out DIR.")
        self.open_folder_button.clicked.connect(self._ask_folder)
        runs_row.addWidget(self.open_folder_button)
        runs_row.addStretch(1)
        runs_column.addLayout(runs_row)
        right.addWidget(runs_box)
        self.tabs = QTabWidget()
        self.report_panel = ReportPanel()
        self.report_panel.open_html_requested.connect(self.open_html)
        self.tabs.addTab(self.report_panel, "Report")
        self.answers_panel = AnswersPanel()
        self.tabs.addTab(self.answers_panel, "Answers side by side")
        right.addWidget(self.tabs)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 4)
        layout.addWidget(right, 1)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()
        self.refresh_runs()

    def stop(self, timeout_ms: int = 10000) -> bool:
        """End the page's thread (a run in the core thread is stopped with the backend)."""
        return bool(self.worker.stop(timeout_ms))

    def set_collection_names(self, names: Sequence[str]) -> None:
        """The collections that exist (from the Library page); the choice is kept."""
        current = self.collection_combo.currentData()
        self.collection_combo.clear()
        self.collection_combo.addItem(NO_DOCUMENTS, None)
        for name in names:
            self.collection_combo.addItem(name, name)
        found = self.collection_combo.findData(current) if current else -1
        self.collection_combo.setCurrentIndex(max(found, 0) if current else
                                              (1 if len(names) == 1 else 0))

    def set_adapter_entries(self, entries: Sequence[AdapterEntry]) -> None:
        """The adapters in the catalog (from the Models page); ticks are kept."""
        ticked = set(self.chosen_adapters())
        self.adapter_list.clear()
        for entry in entries:
            if not entry.usable:
                continue
            item = QListWidgetItem(entry.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if entry.id in ticked
                               else Qt.CheckState.Unchecked)
            self.adapter_list.addItem(item)
        if self.adapter_list.count() == 0:
            item = QListWidgetItem("none imported (Models page)")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.adapter_list.addItem(item)

    # -- the form --------------------------------------------------------------------------

    def _ask_questions(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a question set", "",
                                              "Question set (*.jsonl);;All files (*)")
        if path:
            self.questions_edit.setText(path)

    def _ask_marked_questions(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Make a question set from marked answers",
                                              "marked-answers.jsonl", "Question set (*.jsonl)")
        if path:
            self.make_question_set(Path(path))

    def make_question_set(self, out: Path) -> None:
        """Write the answers marked good to ``out`` (in the core thread, which owns the chats)
        and choose it as the question set."""
        def made(result: tuple[Path, int]) -> None:
            self.questions_edit.setText(str(result[0]))
            count = f"{result[1]} question{'s' if result[1] != 1 else ''}"
            self.status.setText(f"{count} from your marked answers, scored by token F1, in "
                                f"{result[0]}.")

        self.backend.run(self.backend.core, partial(tasks.questions_from_marked, out=out),
                         "make a question set from marked answers", on_result=made)

    def chosen_adapters(self) -> list[str]:
        items = (self.adapter_list.item(i) for i in range(self.adapter_list.count()))
        return [i.text() for i in items if i.checkState() == Qt.CheckState.Checked]

    def chosen_modes(self) -> tuple[Mode, ...]:
        return tuple(m for m in MODES if self.mode_boxes[m].isChecked())

    def form(self) -> tasks.LabForm:
        """The run the form describes."""
        return tasks.LabForm(
            questions=Path(self.questions_edit.text().strip()).expanduser(),
            collection=self.collection_combo.currentData(),
            adapters=tuple((name, 1.0) for name in self.chosen_adapters()),
            modes=self.chosen_modes(), limit=self.limit.value() or None,
            max_tokens=self.max_tokens.value())

    def _update(self) -> None:
        idle = self.state == "idle"
        self.run_button.setEnabled(idle and bool(self.questions_edit.text().strip())
                                   and bool(self.chosen_modes()))
        self.cancel_button.setEnabled(self.state == "running")
        widgets: list[QWidget] = [self.questions_edit, self.choose_button, self.collection_combo,
                                  self.adapter_list, self.limit, self.max_tokens,
                                  *self.mode_boxes.values()]
        for widget in widgets:
            widget.setEnabled(idle)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update()

    # -- a run -----------------------------------------------------------------------------

    def start_run(self) -> None:
        """Check the inputs and run (or continue) the comparison in the core thread."""
        if self.state != "idle":
            return
        form = self.form()
        self.progress_state = tasks.RunProgress()
        self._failed = False
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.arm_progress.setText("")
        self.status.setText(f"Checking {form.questions.name}…")
        self._set_state("running")
        self._job = self.backend.run(
            self.backend.core, partial(tasks.run_lab, form=form, runs_dir=self.paths.lab_dir),
            "run the lab", on_yield=self._event, on_error=self._run_failed,
            on_finished=self._run_ended)

    def _event(self, event: object) -> None:
        if not self.progress_state.add(event):
            return
        state = self.progress_state
        if state.total and state.loading is None:
            self.progress.setRange(0, state.total)
            self.progress.setValue(state.done)
        self.status.setText(state.status_line() if self.state == "running" else "Stopping…")
        self.arm_progress.setText(
            "<table>" + "".join(
                f"<tr><td>{c.arm.label}</td><td align='right'>&nbsp;{c.done}/{c.total}</td></tr>"
                for c in state.arms) + "</table>")

    def _run_failed(self, error: BaseException) -> bool:
        self._failed = True
        message = user_message(error)
        if self.progress_state.folder is None:  # refused before anything ran
            self.status.setText(f"Not started: {message}" if message else "Not started.")
        return True  # and report it in the one place errors are shown

    def _run_ended(self) -> None:
        cancelled = self.state == "stopping"
        self._job = None
        self.progress.setVisible(False)
        if not (self._failed and self.progress_state.folder is None):
            self.status.setText(tasks.outcome(self.progress_state, failed=self._failed,
                                              cancelled=cancelled))
        self._set_state("idle")
        self.refresh_runs(select=self.progress_state.folder)

    def cancel(self) -> None:
        """Stop the run: the answer in progress is cut short, every answer made is kept."""
        if self.state == "running" and self._job is not None:
            self._set_state("stopping")
            self.status.setText("Stopping after the answer in progress…")
            self._job.cancel()

    # -- runs and reports ------------------------------------------------------------------

    def refresh_runs(self, select: Path | None = None) -> None:
        """List the runs again (off this thread), then pick ``select`` (else the one picked)."""
        keep = select or self._current_path()
        self.backend.run(self.worker, partial(tasks.runs, extra=list(self.opened)),
                         "list the lab runs", on_result=lambda found: self._show_runs(found, keep))

    def _show_runs(self, listings: list[RunListing], select: Path | None) -> None:
        self.listings = listings
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for listing in listings:
            item = QListWidgetItem(f"{listing.title()}\n{listing.progress()}")
            item.setData(PATH_ROLE, str(listing.path))
            item.setToolTip(listing.error or str(listing.path))
            self.run_list.addItem(item)
        self.run_list.blockSignals(False)
        if not listings:
            empty = QListWidgetItem("No runs yet: choose a question set and Run.")
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.run_list.addItem(empty)
            return
        paths = [listing.path for listing in listings]
        wanted = select.resolve() if select is not None else None
        row = paths.index(wanted) if wanted in paths else 0
        self.run_list.blockSignals(True)
        self.run_list.setCurrentRow(row)
        self.run_list.blockSignals(False)
        self._pick(self.run_list.item(row))  # its report is read again: it may have grown

    def _current_path(self) -> Path | None:
        item = self.run_list.currentItem()
        value = item.data(PATH_ROLE) if item is not None else None
        return Path(value) if value else None

    def _pick(self, item: QListWidgetItem | None) -> None:
        value = item.data(PATH_ROLE) if item is not None else None
        if not value:
            return
        self._wanted = Path(value)
        self.backend.run(self.worker, partial(tasks.report, folder=self._wanted),
                         "read the lab run", on_result=self._report_ready)

    def _report_ready(self, report: RunReport) -> None:
        if self._wanted is not None and report.folder.resolve() != self._wanted.resolve():
            return  # another run was picked meanwhile
        self.report = report
        self.report_panel.show_report(report)
        self.answers_panel.show_report(report)

    def _ask_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a lab run folder")
        if path:
            self.open_run_folder(Path(path))

    def open_run_folder(self, path: Path) -> None:
        """Add a run folder from elsewhere (``bastion lab run --out``) to the list and show it."""
        if path.resolve() not in self.opened:
            self.opened.append(path.resolve())
        self.refresh_runs(select=path)

    def open_html(self) -> None:
        """Write the shown run's report files again and open report.html in the browser."""
        if self.report is None:
            return
        self.backend.run(self.worker, partial(tasks.html_report, folder=self.report.folder),
                         "write the lab report", on_result=self._open_file)

    def _open_file(self, path: Path) -> None:
        if not self.open_url(QUrl.fromLocalFile(str(path))):
            self.status.setText(f"No browser could be started; the report is {path}.")
