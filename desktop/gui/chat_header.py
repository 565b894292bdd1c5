"""The bar above a conversation: its title, where answers come from, which collections, and
which LoRA adapters (each at its own scale) the model answers with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QWidget,
    QWidgetAction,
)

if TYPE_CHECKING:
    from bastion.desktop.grounding import Mode
    from bastion.models.adapter_catalog import AdapterEntry
    from bastion.store.chats import Chat

MODE_LABELS: dict[Mode, str] = {
    "model": "Model only",
    "docs": "Documents only",
    "both": "Model + documents",
}


ADAPTER_LABEL_WIDTH = 220  # pixels of the header button for the first adapter's name and scale

AdapterChoice = tuple[str, float]  # an adapter's name and scale, as ``Chat.adapters`` holds them


def describe_adapters(adapters: Sequence[AdapterChoice]) -> str:
    """``style ×0.5, facts ×1``: adapters with their scales, as the header and answers show them."""
    return ", ".join(f"{name} ×{scale:g}" for name, scale in adapters)


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" instead of pushing its neighbours away."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        text = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, self.width())
        painter.drawText(self.rect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         text)


class AdapterPicker(QWidget):
    """The adapters menu's panel: per adapter a check box, a scale and the model it fits.

    ``changed`` carries every checked adapter with its scale, in name order, each time one is
    checked, unchecked or rescaled: the panel is the user's whole choice, so quick successive
    changes never undo each other while earlier saves are still on their way.
    """

    changed = Signal(list)  # list[AdapterChoice]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(10, 8, 10, 8)
        self.grid.setHorizontalSpacing(10)
        self.rows: dict[str, tuple[QCheckBox, QDoubleSpinBox, QLabel]] = {}
        self.hint = QLabel()
        self.hint.setObjectName("adaptersHint")
        self.hint.setWordWrap(True)
        self._fits: dict[str, str] = {}
        self._rebuild([], {})

    def set_adapters(self, fits: Mapping[str, str], chosen: Sequence[AdapterChoice]) -> None:
        """Offer the adapters of ``fits`` (name → the model it fits, or "") and check ``chosen``.

        A chosen adapter that is no longer imported stays listed, marked missing, so it can be
        unchecked. Rows are rebuilt only when the names change, never under a running edit.
        """
        scales = dict(chosen)
        names = sorted(set(fits) | set(scales))
        if names != list(self.rows) or dict(fits) != self._fits:
            self._rebuild(names, fits)
        for name, (check, scale, _fit) in self.rows.items():
            for widget in (check, scale):
                widget.blockSignals(True)
            check.setChecked(name in scales)
            if name in scales:
                scale.setValue(scales[name])
            scale.setEnabled(name in scales)
            for widget in (check, scale):
                widget.blockSignals(False)

    def chosen(self) -> list[AdapterChoice]:
        return [(name, round(scale.value(), 2)) for name, (check, scale, _fit) in self.rows.items()
                if check.isChecked()]

    def _rebuild(self, names: list[str], fits: Mapping[str, str]) -> None:
        for check, scale, fit in self.rows.values():
            for widget in (check, scale, fit):
                self.grid.removeWidget(widget)
                widget.deleteLater()
        self.grid.removeWidget(self.hint)
        self.rows, self._fits = {}, dict(fits)
        if names:
            self.grid.addWidget(QLabel("<b>Adapter</b>"), 0, 0)
            self.grid.addWidget(QLabel("<b>Scale</b>"), 0, 1)
        for row, name in enumerate(names, start=1):
            # (gguf and numpy come with it: imported when there are adapters, not at start-up)
            from bastion.models.adapter_catalog import SCALE_LIMIT

            missing = name not in fits
            check = QCheckBox(f"{name} (missing)" if missing else name)
            check.setObjectName(f"adapter:{name}")
            scale = QDoubleSpinBox()
            scale.setRange(-SCALE_LIMIT, SCALE_LIMIT)
            scale.setSingleStep(0.1)
            scale.setDecimals(2)
            scale.setValue(1.0)
            scale.setKeyboardTracking(False)  # a typed "0.25" is one change, not four
            scale.setToolTip("How strongly the adapter applies: 1 as trained, 0 not at all, "
                             "negative against it.")
            fit = QLabel("no longer imported" if missing else
                         f"for {fits[name]}" if fits[name] else "")
            fit.setObjectName("adapterFits")
            if missing:
                check.setToolTip("This adapter is no longer in the adapters folder: the chat "
                                 "cannot answer with it. Uncheck it, or import it again on the "
                                 "Models page.")
            check.toggled.connect(partial(self._toggled, scale))
            scale.valueChanged.connect(partial(self._rescaled, check))
            self.grid.addWidget(check, row, 0)
            self.grid.addWidget(scale, row, 1)
            self.grid.addWidget(fit, row, 2)
            self.rows[name] = (check, scale, fit)
        self.hint.setText("Scale from −4 to 4; 1 applies an adapter as trained." if names else
                          "No adapters yet: import one on the Models page.")
        self.grid.addWidget(self.hint, len(names) + 1, 0, 1, 3)
        self.adjustSize()

    def _toggled(self, scale: QDoubleSpinBox, checked: bool) -> None:
        scale.setEnabled(checked)
        self._emit()

    def _rescaled(self, check: QCheckBox, _value: float) -> None:
        if check.isChecked():
            self._emit()

    def _emit(self) -> None:
        self.changed.emit(self.chosen())


class ChatHeader(QWidget):
    """Title, mode chooser, collections chooser and adapters chooser of the chat on screen."""

    mode_chosen = Signal(str)
    collections_chosen = Signal(list)
    adapters_chosen = Signal(list)  # list[AdapterChoice]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = ElidedLabel("")
        self.title.setObjectName("chatTitle")
        layout.addWidget(self.title, 1)
        layout.addWidget(QLabel("Answer from:"))
        self.mode = QComboBox()
        self.mode.setObjectName("modeCombo")
        for mode, label in MODE_LABELS.items():
            self.mode.addItem(label, mode)
        self.mode.activated.connect(lambda _i: self.mode_chosen.emit(self.mode.currentData()))
        layout.addWidget(self.mode)
        self.collections_button = QToolButton()
        self.collections_button.setObjectName("collectionsButton")
        self.collections_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.collections_menu = QMenu(self.collections_button)
        self.collections_button.setMenu(self.collections_menu)
        layout.addWidget(self.collections_button)
        self.adapters_button = QToolButton()
        self.adapters_button.setObjectName("adaptersButton")
        self.adapters_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.adapters_menu = QMenu(self.adapters_button)
        self.adapters_picker = AdapterPicker()
        self.adapters_picker.changed.connect(self.adapters_chosen)
        picker_action = QWidgetAction(self.adapters_menu)
        picker_action.setDefaultWidget(self.adapters_picker)
        self.adapters_menu.addAction(picker_action)
        # While the menu is open the panel shows what the user is choosing; once it closes it
        # shows the chat as stored again (so a save that failed does not look saved).
        self.adapters_menu.aboutToHide.connect(partial(self._show_adapters, True))
        self.adapters_button.setMenu(self.adapters_menu)
        layout.addWidget(self.adapters_button)
        self.chat: Chat | None = None
        self.names: list[str] = []
        self.adapter_fits: dict[str, str] = {}

    def show_chat(self, chat: Chat | None, names: Sequence[str],
                  adapters: Sequence[AdapterEntry] = ()) -> None:
        """Show ``chat``'s settings; ``names`` are the collections that exist and ``adapters``
        the LoRA adapters that may be chosen."""
        self.chat, self.names = chat, list(names)
        self.adapter_fits = {entry.id: entry.base.model if entry.base else ""
                             for entry in adapters if entry.usable}
        self.title.setText(chat.title if chat else "")
        self.title.setToolTip(chat.title if chat else "")
        self.mode.setEnabled(chat is not None)
        if chat is not None:
            self.mode.setCurrentIndex(self.mode.findData(chat.mode))
        chosen = set(chat.collections) if chat else set()
        self.collections_menu.clear()
        for name in sorted(set(self.names) | chosen):
            action = QAction(name, self.collections_menu)
            action.setCheckable(True)
            action.setChecked(name in chosen)
            action.toggled.connect(partial(self._toggled, name))
            self.collections_menu.addAction(action)
        if not self.collections_menu.actions():
            empty = QAction("No collections yet: add a folder on the Library page",
                            self.collections_menu)
            empty.setEnabled(False)
            self.collections_menu.addAction(empty)
        label = ", ".join(sorted(chosen)) if chosen else "none"
        self.collections_button.setText(f"Collections: {label}")
        self.collections_button.setEnabled(chat is not None and chat.mode != "model")
        self._show_adapters()

    def _show_adapters(self, closing: bool = False) -> None:
        chat = self.chat
        chosen = chat.adapters if chat else []
        if closing or not self.adapters_menu.isVisible():
            self.adapters_picker.set_adapters(self.adapter_fits, chosen)
        if chosen:
            more = f" +{len(chosen) - 1}" if len(chosen) > 1 else ""
            first = self.adapters_button.fontMetrics().elidedText(
                describe_adapters(chosen[:1]), Qt.TextElideMode.ElideMiddle, ADAPTER_LABEL_WIDTH)
            self.adapters_button.setText(f"Adapters: {first}{more}")
            self.adapters_button.setToolTip("LoRA adapters this chat answers with, at their "
                                            "scales:\n" + "\n".join(
                                                describe_adapters([a]) for a in chosen))
        else:
            self.adapters_button.setText("Adapters: none")
            self.adapters_button.setToolTip("This chat answers with the model alone. Choose LoRA "
                                            "adapters, each at its own scale, here.")
        self.adapters_button.setEnabled(chat is not None)

    def _toggled(self, name: str, checked: bool) -> None:
        chosen = set(self.chat.collections) if self.chat else set()
        (chosen.add if checked else chosen.discard)(name)
        self.collections_chosen.emit(sorted(chosen))
