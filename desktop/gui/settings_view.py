"""The settings page: engine (threads, context, GPU layers), sampling defaults, system prompt,
and where the data lives.

Saving writes ``settings.json`` in the core thread and applies what it can at once: sampling
and the system prompt are read by every answer; a new context size, thread count or GPU layer
count reloads the loaded model. A new data folder is remembered outside the data folder
(``paths.choose_data_home``) and used from the next start, since the settings file itself lives
in it; ``BASTION_HOME`` still overrides it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.paths import choose_data_home
from bastion.desktop.settings import Settings


def _spin(low: int, high: int, step: int = 1, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setMinimumWidth(120)
    box.setRange(low, high)
    box.setSingleStep(step)
    if special:
        box.setSpecialValueText(special)
    return box


def _dspin(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setMinimumWidth(120)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _form(group: QGroupBox) -> QFormLayout:
    form = QFormLayout(group)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
    return form


class SettingsView(QWidget):
    """A form over ``Settings``; Save persists and applies."""

    def __init__(self, backend: Backend, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.window_ = window
        self.settings: Settings | None = None
        self.saving = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)

        engine = QGroupBox("Engine (saving reloads the model)")
        form = _form(engine)
        self.threads = _spin(0, max(64, os.cpu_count() or 1), special="automatic (all cores)")
        self.n_ctx = _spin(512, 131072, 512)
        self.gpu_layers = _spin(0, 999)
        form.addRow("CPU threads:", self.threads)
        form.addRow("Context size (tokens):", self.n_ctx)
        form.addRow("GPU layers:", self.gpu_layers)
        layout.addWidget(engine)

        sampling = QGroupBox("Answers (apply to the next answer)")
        form = _form(sampling)
        self.temperature = _dspin(0.0, 2.0, 0.05)
        self.top_p = _dspin(0.0, 1.0, 0.01)
        self.top_k = _spin(0, 1000)
        self.repeat_penalty = _dspin(0.5, 2.0, 0.01)
        self.max_tokens = _spin(16, 32768, 64)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setFixedHeight(80)
        self.system_prompt.setMinimumWidth(520)
        form.addRow("Temperature (0 = always the same answer):", self.temperature)
        form.addRow("Top-p:", self.top_p)
        form.addRow("Top-k:", self.top_k)
        form.addRow("Repeat penalty:", self.repeat_penalty)
        form.addRow("Longest answer (tokens):", self.max_tokens)
        form.addRow("System prompt:", self.system_prompt)
        layout.addWidget(sampling)

        documents = QGroupBox("Answers from documents")
        form = _form(documents)
        self.passage_sentences = _spin(0, 50, special="whole passages")
        self.passage_sentences.setToolTip(Settings.__dataclass_fields__["passage_sentences"].metadata["help"])
        self.grounded_adapter = QCheckBox("Use the grounded adapter that ships with Bastion")
        self.grounded_adapter.setToolTip(Settings.__dataclass_fields__["grounded_adapter"].metadata["help"])
        form.addRow("Sentences per passage:", self.passage_sentences)
        form.addRow("", self.grounded_adapter)
        layout.addWidget(documents)

        data = QGroupBox("Data folder")
        row = QHBoxLayout(data)
        self.home = QLineEdit()
        self.home.setReadOnly(True)
        row.addWidget(self.home, 1)
        open_button = QPushButton("Open")
        open_button.clicked.connect(self._open_home)
        row.addWidget(open_button)
        change_button = QPushButton("Change…")
        change_button.setObjectName("changeDataFolder")
        change_button.clicked.connect(self._change_home)
        row.addWidget(change_button)
        layout.addWidget(data)
        self.home_hint = QLabel("Chats, the document index, imported models and logs live here, "
                                "private to your account. A new folder is used from the next "
                                "start; nothing is moved.")
        self.home_hint.setWordWrap(True)
        layout.addWidget(self.home_hint)

        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("settingsSave")
        self.save_button.clicked.connect(self.save)
        revert = QPushButton("Revert")
        revert.clicked.connect(lambda: self.settings and self._fill(self.settings))
        defaults = QPushButton("Restore defaults")
        defaults.clicked.connect(lambda: self._fill(Settings()))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons.addWidget(self.save_button)
        buttons.addWidget(revert)
        buttons.addWidget(defaults)
        buttons.addWidget(self.status, 1)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.setEnabled(False)  # until the settings arrive from the core thread

    def show_settings(self, settings: Settings, home: Path) -> None:
        self.settings = settings
        self.home.setText(str(home))
        self._fill(settings)
        self.setEnabled(True)

    def _fill(self, s: Settings) -> None:
        self.threads.setValue(s.n_threads or 0)
        self.n_ctx.setValue(s.n_ctx)
        self.gpu_layers.setValue(s.n_gpu_layers)
        self.temperature.setValue(s.temperature)
        self.top_p.setValue(s.top_p)
        self.top_k.setValue(s.top_k)
        self.repeat_penalty.setValue(s.repeat_penalty)
        self.max_tokens.setValue(s.max_tokens)
        self.system_prompt.setPlainText(s.system_prompt)
        self.passage_sentences.setValue(s.passage_sentences)
        self.grounded_adapter.setChecked(s.grounded_adapter)

    def form_settings(self) -> Settings:
        """The settings as the form shows them."""
        base = self.settings or Settings()
        return dataclasses.replace(
            base,
            n_threads=self.threads.value() or None,
            n_ctx=self.n_ctx.value(),
            n_gpu_layers=self.gpu_layers.value(),
            temperature=round(self.temperature.value(), 4),
            top_p=round(self.top_p.value(), 4),
            top_k=self.top_k.value(),
            repeat_penalty=round(self.repeat_penalty.value(), 4),
            max_tokens=self.max_tokens.value(),
            system_prompt=self.system_prompt.toPlainText().strip() or Settings().system_prompt,
            passage_sentences=self.passage_sentences.value(),
            grounded_adapter=self.grounded_adapter.isChecked(),
        )

    def save(self) -> None:
        """Persist and apply (reloading the model if the engine settings changed)."""
        wanted = self.form_settings()
        reload = self.settings is not None and wanted.load_options() != self.settings.load_options()
        self.saving = True
        self.save_button.setEnabled(False)
        self.status.setText("Saving and reloading the model…" if reload else "Saving…")
        self.backend.run(self.backend.core,
                         lambda session, job: core_tasks.save_settings(session, job, wanted),
                         "save the settings",
                         on_yield=lambda _e: None,
                         on_result=lambda info: self._saved(wanted, info, reload),
                         on_error=self._failed, on_finished=self._done)

    def _saved(self, wanted: Settings, info: Any, reloaded: bool) -> None:
        self.settings = wanted
        if reloaded and info is not None:
            self.window_.set_model_info(info)
        self.status.setText("Saved. " + ("The model was reloaded with the new engine settings."
                                         if reloaded and info is not None
                                         else "They apply to the next answer."))

    def _failed(self, error: BaseException) -> bool:
        self.status.setText("The settings may not all have been applied: see the message.")
        return True

    def _done(self) -> None:
        self.saving = False
        self.save_button.setEnabled(True)

    def _change_home(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the data folder", self.home.text())
        if not folder:
            return
        try:
            choose_data_home(Path(folder))
        except OSError as error:
            self.home_hint.setText(f"Could not remember {folder}: {error.strerror or error}. "
                                   "Choose a folder you may write to.")
            return
        self.home_hint.setText(f"From the next start Bastion keeps its data in {folder}. "
                               f"Everything so far stays in {self.home.text()}.")

    def _open_home(self) -> None:
        if self.home.text():
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.home.text()))
