"""The Fine-tune page: train a LoRA adapter on a chat JSONL file, watch its loss fall, cancel and
resume it, and merge the result into a standalone quantized model.

The page has a thread of its own (a run lasts minutes to hours, and the files and core threads
must stay free for the other pages); the training itself runs in a separate process
(``desktop.finetuning.train``). The data file is read line by line first, so a bad line is
reported before the model loads. Cancel reaches the training process at once: it saves a
checkpoint of its last whole step and stops, and the page offers Resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop import finetuning
from bastion.desktop.finetuning import describe
from bastion.desktop.gui import finetune_tasks as tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.finetune_widgets import LossPlot, MergeDialog
from bastion.desktop.gui.workers import Worker
from bastion.desktop.paths import DataPaths
from bastion.models.catalog import ModelEntry
from bastion.models.finetune_process import FinetuneProcess
from bastion.models.finetune_types import TARGET_GROUPS, Evaluated, Prepared, StepDone

MAX_LOG_LINES = 1000
LOG_EVERY_STEPS = 10  # the status line shows every step; the log keeps one in ten


class FinetuneView(QWidget):
    """The form, the live loss curve, the status line and the run's log.

    Args:
        backend: reports errors and tracks jobs.
        paths: the data folder (runs live in ``finetune/NAME``, adapters in the catalog).
        train: the training use case.
        merge: the merge use case.
        process: makes the process a run trains in (tests pass a scripted fake).

    Signals:
        adapter_registered(object): an ``AdapterEntry`` a finished run added to the catalog.
        model_merged(object): the ``Path`` of a model a merge added to the catalog.
    """

    adapter_registered = Signal(object)
    model_merged = Signal(object)

    def __init__(self, backend: Backend, paths: DataPaths,
                 train: tasks.TrainFunction = finetuning.train,
                 merge: tasks.MergeFunction = finetuning.merge,
                 process: tasks.ProcessFactory = FinetuneProcess,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.paths = paths
        self.train = train
        self.merge_fn = merge
        self.process = process
        self.worker = Worker(lambda: paths, None, "bastion-finetune")
        self.state: str = "idle"  # idle, checking, training, stopping, merging
        self.history = tasks.LossHistory()
        self.adapter_id: str | None = None  # the adapter the last run registered
        self._job: Any = None
        self._run_name = ""
        self._failed = False
        self._build()
        self._update()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        form_box = QGroupBox("Train a LoRA adapter")
        form = QFormLayout(form_box)
        self.data_edit = QLineEdit()
        self.data_edit.setObjectName("finetuneData")
        self.data_edit.setPlaceholderText("chat-format .jsonl")
        self.data_edit.textChanged.connect(lambda _t: self._update())
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self._ask_data)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data_edit, 1)
        data_row.addWidget(self.choose_button)
        form.addRow("Training data:", data_row)
        self.collection_combo = QComboBox()
        self.collection_combo.setObjectName("finetuneCollection")
        self.collection_combo.setToolTip(
            "Grounded training: the data is a question set (question, answers), each question is\n"
            "searched in this collection and taught with the passages found, distractors among\n"
            "them, some teaching \"I could not find this in your documents.\" (RAFT).")
        self.collection_combo.addItem("None: the data is chat conversations", None)
        self.collection_combo.currentIndexChanged.connect(lambda _i: self._data_kind_changed())
        form.addRow("Grounded in:", self.collection_combo)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("finetuneName")
        self.name_edit.setPlaceholderText("e.g. support-style")
        self.name_edit.textChanged.connect(lambda _t: self._check_resume())
        form.addRow("Adapter name:", self.name_edit)
        self.base_combo = QComboBox()
        self.base_combo.setObjectName("finetuneBase")
        self.base_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.base_combo.setToolTip("Llama, SmolLM, Mistral and Qwen 2/3 models can be fine-tuned.")
        self.base_combo.addItem("Embedded default model", None)
        form.addRow("Base model:", self.base_combo)
        self.epochs = _spin_box(1, 100, tasks.DEFAULTS["epochs"])
        form.addRow("Epochs:", self.epochs)
        self.rank = _spin_box(1, 256, tasks.DEFAULTS["rank"])
        form.addRow("Rank:", self.rank)
        self.targets = QComboBox()
        self.targets.setObjectName("finetuneTargets")
        self.targets.addItem("Attention (answers stay fast)", "attention")
        self.targets.addItem("All projections (learns most)", "all")
        self.targets.setToolTip("Each adapted projection adds work to every answered token; "
                                "an attention-only adapter slows answers less and learns less.")
        form.addRow("Adapt:", self.targets)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(0.00001, 0.1)
        self.learning_rate.setSingleStep(0.0001)
        self.learning_rate.setValue(tasks.DEFAULTS["learning_rate"])
        form.addRow("Learning rate:", self.learning_rate)
        self.max_steps = _spin_box(0, 1_000_000, 0)
        self.max_steps.setSpecialValueText("no limit")  # shown for 0: run every epoch
        form.addRow("Max steps:", self.max_steps)
        self.resume = QCheckBox("Resume from the checkpoint")
        self.resume.setObjectName("finetuneResume")
        self.resume.setToolTip("A cancelled or interrupted run with this name left a checkpoint.")
        form.addRow("", self.resume)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("finetuneStart")
        self.start_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("finetuneCancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.result = QLabel("")
        self.result.setObjectName("finetuneResult")
        self.result.setWordWrap(True)
        form.addRow(self.result)
        self.merge_button = QPushButton("Merge into a model…")
        self.merge_button.setObjectName("finetuneMerge")
        self.merge_button.clicked.connect(self._ask_merge)
        self.merge_button.setVisible(False)
        form.addRow(self.merge_button)
        form_box.setMaximumWidth(480)
        layout.addWidget(form_box, 0, Qt.AlignmentFlag.AlignTop)

        right = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        column = QVBoxLayout(top)
        column.setContentsMargins(0, 0, 0, 0)
        self.plot = LossPlot()
        column.addWidget(self.plot, 1)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        column.addWidget(self.progress)
        self.status = QLabel("Choose a chat-format JSONL file (one conversation per line, as "
                             "bastion chats export ID --format jsonl writes them) and a name, "
                             "then Start.")
        self.status.setObjectName("finetuneStatus")
        self.status.setWordWrap(True)
        column.addWidget(self.status)
        right.addWidget(top)
        self.log = QListWidget()
        self.log.setObjectName("finetuneLog")
        right.addWidget(self.log)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        layout.addWidget(right, 1)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()
        self._check_resume()

    def stop(self, timeout_ms: int = 40000) -> bool:
        """Cancel a run (it saves a checkpoint) and end the page's thread."""
        return bool(self.worker.stop(timeout_ms))

    def set_models(self, entries: list[ModelEntry]) -> None:
        """Offer the catalog's trainable models; the embedded one is chosen by default."""
        current = self.base_combo.currentData()
        self.base_combo.clear()
        models = tasks.trainable_models(entries)
        if not models:
            self.base_combo.addItem("Embedded default model", None)
        for entry in models:
            # By id (the file name): a merged model keeps its base's general.name.
            suffix = " (embedded)" if entry.origin == "embedded" else ""
            self.base_combo.addItem(f"{entry.id}{suffix}", str(entry.path))
            self.base_combo.setItemData(self.base_combo.count() - 1, str(entry.path),
                                        Qt.ItemDataRole.ToolTipRole)
        wanted = next((i for i, e in enumerate(models) if str(e.path) == current), None)
        if wanted is None:
            wanted = next((i for i, e in enumerate(models) if e.origin == "embedded"), 0)
        self.base_combo.setCurrentIndex(wanted)

    # -- the form --------------------------------------------------------------------------

    def _ask_data(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the training data", "",
                                              "Chat JSONL (*.jsonl);;All files (*)")
        if path:
            self.set_data_file(Path(path))

    def set_collection_names(self, names: Sequence[str]) -> None:
        """The library's collections, offered for grounded training."""
        current = self.collection_combo.currentData()
        self.collection_combo.blockSignals(True)
        while self.collection_combo.count() > 1:
            self.collection_combo.removeItem(1)
        for name in names:
            self.collection_combo.addItem(f"Collection “{name}” (data: a question set)", name)
        found = self.collection_combo.findData(current)
        self.collection_combo.setCurrentIndex(max(found, 0))
        self.collection_combo.blockSignals(False)
        self._data_kind_changed()

    def _data_kind_changed(self) -> None:
        grounded = self.collection_combo.currentData() is not None
        self.data_edit.setPlaceholderText("question set .jsonl (question, answers)" if grounded
                                          else "chat-format .jsonl")

    def set_data_file(self, path: Path) -> None:
        self.data_edit.setText(str(path))
        if not self.name_edit.text().strip():
            self.name_edit.setText(path.stem)

    def request(self) -> tasks.RunRequest:
        """The run the form describes."""
        return tasks.RunRequest(
            name=self.name_edit.text().strip(), data=Path(self.data_edit.text().strip()),
            base=self.base_combo.currentData(), epochs=self.epochs.value(),
            rank=self.rank.value(), learning_rate=self.learning_rate.value(),
            max_steps=self.max_steps.value() or None,
            targets=TARGET_GROUPS[self.targets.currentData()],
            resume=self.resume.isEnabled() and self.resume.isChecked(),
            collection=self.collection_combo.currentData())

    def _check_resume(self) -> None:
        # A stat or two: cheap enough for the GUI thread, and it must follow every keystroke.
        found = tasks.has_checkpoint(self.paths, self.name_edit.text().strip())
        if found and not self.resume.isEnabled():
            self.resume.setChecked(True)  # a kept checkpoint is usually meant to be continued
        self.resume.setEnabled(found and self.state == "idle")
        if not found:
            self.resume.setChecked(False)

    def _update(self) -> None:
        idle = self.state == "idle"
        self.start_button.setEnabled(idle and bool(self.data_edit.text().strip()))
        self.cancel_button.setEnabled(self.state in ("checking", "training"))
        for widget in (self.data_edit, self.choose_button, self.collection_combo, self.name_edit,
                       self.base_combo, self.epochs, self.rank, self.targets, self.learning_rate,
                       self.max_steps):
            widget.setEnabled(idle)
        self.merge_button.setEnabled(idle)
        if idle:
            self._check_resume()
        else:
            self.resume.setEnabled(False)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update()

    # -- a run -----------------------------------------------------------------------------

    def start_training(self) -> None:
        """Check the data and settings in the page's thread, then train."""
        if self.state != "idle":
            return
        request = self.request()
        self.history = tasks.LossHistory()
        self.plot.show_history(self.history)
        self.log.clear()
        self.adapter_id = None
        self.merge_button.setVisible(False)
        self.result.setText("")
        self._failed = False
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText(f"Checking {request.data.name}…")
        self._set_state("checking")
        self._job = self.backend.run(
            self.worker, partial(tasks.check_run, request=request), "check the training data",
            on_result=self._checked, on_error=self._check_failed)

    def _check_failed(self, error: BaseException) -> bool:
        self._end_run(f"Not started: {error}")
        return True  # and report it

    def _checked(self, checked: tasks.CheckedRun) -> None:
        if self.state != "checking":  # cancelled while the file was read
            self._end_run("Not started.")
            return
        config = checked.config
        self._run_name = config.name
        self.history = checked.history  # a resumed run continues the curve it had
        self.plot.show_history(self.history)
        self._log((checked.grounded or f"{checked.examples} conversations in {config.data.name}")
                  + f"; base {config.base.name}" + ("; resuming" if config.resume else ""))
        self.status.setText("Starting the training (loading the model takes a while)…")
        self._set_state("training")
        self._job = self.backend.run(
            self.worker, partial(tasks.run_training, config=config, train=self.train,
                                 process=self.process),
            f"fine-tune {config.name}", on_yield=self._event, on_error=self._train_failed,
            on_finished=self._trained)

    def _event(self, event: object) -> None:
        if self.history.add(event):
            self.plot.show_history(self.history)
            self.status.setText(self.history.status_line())
        if isinstance(event, StepDone):
            self.progress.setRange(0, event.total_steps)
            self.progress.setValue(event.step)
            if event.step % LOG_EVERY_STEPS and event.step != event.total_steps:
                return
        elif isinstance(event, Prepared):
            self.progress.setRange(0, event.total_steps)
            self.progress.setValue(event.start_step)
        elif isinstance(event, finetuning.Registered):
            self.adapter_id = event.adapter.id
            self.adapter_registered.emit(event.adapter)
        elif not isinstance(event, Evaluated):
            line = describe(event)
            self.status.setText(line[:1].upper() + line[1:])
        self._log(describe(event))

    def _train_failed(self, error: BaseException) -> bool:
        self._failed = True
        return True  # report it

    def _trained(self) -> None:
        self._job = None
        message = tasks.run_outcome(self.adapter_id, self.history.last_step, failed=self._failed,
                                    checkpoint=tasks.has_checkpoint(self.paths, self._run_name))
        if self.adapter_id is None:
            self.status.setText(message)  # not "Stopping…" any more
        self._end_run(message)
        self.merge_button.setVisible(self.adapter_id is not None)

    def cancel(self) -> None:
        """Stop the run; it saves a checkpoint of its last whole step to resume from."""
        if self.state == "checking":
            self._set_state("stopping")
            self.status.setText("Stopping…")
        elif self.state == "training" and self._job is not None:
            self._set_state("stopping")
            self.status.setText("Stopping: saving a checkpoint…")
            self._job.cancel()

    def _end_run(self, message: str) -> None:
        self.progress.setVisible(False)
        self.result.setText(message)
        self._set_state("idle")

    def _log(self, line: str) -> None:
        self.log.addItem(line)
        while self.log.count() > MAX_LOG_LINES:
            self.log.takeItem(0)
        self.log.scrollToBottom()

    # -- merge -----------------------------------------------------------------------------

    def _ask_merge(self) -> None:
        if self.adapter_id is None:
            return
        dialog = MergeDialog(self.adapter_id, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.merge(self.adapter_id, quantization=dialog.quantization.currentText(),
                       scale=dialog.scale.value(),
                       model_name=dialog.model_name.text().strip() or None)

    def merge(self, adapter: str, *, quantization: str = "Q8_0", scale: float = 1.0,
              model_name: str | None = None) -> None:
        """Merge ``adapter`` into its base and register the quantized result, off this thread."""
        if self.state != "idle":
            return
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText(f"Merging {adapter} into its base and quantizing to {quantization}…")
        self._set_state("merging")
        self.backend.run(
            self.worker, partial(tasks.merge_adapter, adapter=adapter, merge=self.merge_fn,
                                 scale=scale, quantization=quantization, model_name=model_name),
            f"merge {adapter} into a model", on_result=self._merged, on_error=self._merge_failed)

    def _merge_failed(self, error: BaseException) -> bool:
        self._end_run("The merge did not finish; the adapter is unchanged.")
        return True  # and report it

    def _merged(self, path: Path) -> None:
        self._end_run(f"Registered the model {path.stem}: load it on the Models page.")
        self.status.setText(f"Merged into {path.name}.")
        self.model_merged.emit(path)


def _spin_box(minimum: int, maximum: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    return box
