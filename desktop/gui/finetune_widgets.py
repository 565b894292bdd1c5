"""The Fine-tune page's parts: the live loss curve and the merge dialog."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

# isort: split
import pyqtgraph as pg  # after PySide6: pyqtgraph takes the Qt binding already imported

from bastion.desktop.gui import finetune_tasks as tasks
from bastion.models.lora_merge import QUANTIZATIONS


class LossPlot(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph has no type hints
    """Training loss per step (a line) and held-out loss (points), redrawn as they come."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossCurve")
        self.setMinimumHeight(220)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setLabel("bottom", "step")
        self.setLabel("left", "loss")
        self.addLegend(offset=(-10, 10))
        self.training = self.plot([], [], name="training loss", connect="finite", antialias=True,
                                  pen=pg.mkPen("#2b6cb0", width=2))
        self.held_out = self.plot([], [], name="held-out loss", antialias=True,
                                  pen=pg.mkPen("#dd6b20", width=1, style=Qt.PenStyle.DashLine),
                                  symbol="o", symbolSize=7, symbolBrush="#dd6b20",
                                  symbolPen="#dd6b20")
        self._follow_palette()
        self._built = True

    def changeEvent(self, event: QEvent) -> None:
        # (Qt sends one while pyqtgraph is still constructing: nothing to recolour yet.)
        if event.type() == QEvent.Type.PaletteChange and self.__dict__.get("_built"):
            self._follow_palette()
        super().changeEvent(event)

    def _follow_palette(self) -> None:
        palette = self.palette()
        self.setBackground(palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        for side in ("left", "bottom"):
            self.getAxis(side).setPen(text)
            self.getAxis(side).setTextPen(text)

    def show_history(self, history: tasks.LossHistory) -> None:
        self.training.setData(history.steps, history.losses)
        self.held_out.setData(history.held_out_steps, history.held_out_losses)
        # Steps are whole numbers: no "2.5" ticks while a run is short.
        axis = self.getAxis("bottom")
        if history.steps and history.steps[-1] <= 12:
            axis.setTickSpacing(1, 1)
        else:
            axis.setTickSpacing()


class MergeDialog(QDialog):
    """How to merge an adapter: quantization, strength and the new model's name."""

    def __init__(self, adapter: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Merge into a model")
        form = QFormLayout(self)
        form.addRow(QLabel(f"Merge the adapter {adapter} into its base model and quantize the "
                           "result into a new model."))
        self.quantization = QComboBox()
        self.quantization.addItems(list(QUANTIZATIONS))
        self.quantization.setCurrentText("Q8_0")
        form.addRow("Quantization:", self.quantization)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(-4.0, 4.0)
        self.scale.setSingleStep(0.1)
        self.scale.setValue(1.0)
        form.addRow("Adapter strength:", self.scale)
        self.model_name = QLineEdit()
        self.model_name.setPlaceholderText("named after the base and the adapter")
        form.addRow("New model's name:", self.model_name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
