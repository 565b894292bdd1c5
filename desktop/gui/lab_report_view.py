"""The Lab page's report of one run: the figures per arm, the recommendation, and a button that
opens the full HTML report (charts, every answer) in the browser."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui.table_model import HeaderedTableModel, Index
from bastion.desktop.lab.report import ACCURACY_MEANS
from bastion.desktop.lab.report_html import inline_markdown
from bastion.desktop.lab.runs import RunReport
from bastion.desktop.lab.summary import ArmSummary


class ArmTableModel(HeaderedTableModel):
    """One row per arm: accuracy with its 95% interval, citations, abstention, speed."""

    HEADERS = ("Arm", "Accuracy [95% CI]", "Citation hit", "Abstention", "False abstention",
               "s / answer", "Answers")
    TIPS = (
        "The route: base model, adapters, documents.",
        ACCURACY_MEANS,
        "Of the answerable questions whose answer cites a passage: the cited passage is the "
        "gold source or holds a gold answer.",
        "Questions the documents cannot answer that the arm declined (right to decline).",
        "Answerable questions the arm declined (wrong to decline).",
        "Mean wall time per answer, retrieval included.",
        "Answers this arm has recorded.",
    )

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ArmSummary] = []

    def rows(self) -> list[ArmSummary]:
        return self._rows

    def set_rows(self, rows: list[ArmSummary]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def cells(self, s: ArmSummary) -> tuple[str, ...]:
        return (s.arm.label, s.accuracy.percent() if s.accuracy else "–", str(s.citation_hit),
                str(s.abstention), str(s.false_abstention),
                "–" if s.seconds is None else f"{s.seconds:.1f} s", str(s.answered))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cells(self._rows[index.row()])[index.column()]
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if (role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(self.TIPS)):
            return self.TIPS[section]
        return super().headerData(section, orientation, role)


class ReportPanel(QWidget):
    """A run's header, per-arm table and recommendation.

    Signals:
        open_html_requested: the user asked for the HTML report of the run shown.
    """

    open_html_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report: RunReport | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.header = QLabel("Pick a run to see its report.")
        self.header.setObjectName("labReportHeader")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.header)
        self.model = ArmTableModel()
        self.table = QTableView()
        self.table.setObjectName("labArmTable")
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table)
        self.recommendation = QLabel("")
        self.recommendation.setObjectName("labRecommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.setTextFormat(Qt.TextFormat.RichText)
        self.recommendation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.recommendation)
        layout.addStretch(1)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open the full report in the browser")
        self.open_button.setObjectName("labOpenReport")
        self.open_button.setToolTip("report.html in the run folder: charts, differences between "
                                    "arms, costs and every answer. It has no scripts and loads "
                                    "nothing from the network.")
        self.open_button.clicked.connect(self.open_html_requested)
        self.open_button.setEnabled(False)
        row.addWidget(self.open_button)
        row.addStretch(1)
        layout.addLayout(row)

    def show_report(self, report: RunReport | None) -> None:
        self.report = report
        self.open_button.setEnabled(report is not None)
        if report is None:
            self.header.setText("Pick a run to see its report.")
            self.model.set_rows([])
            self.recommendation.setText("")
            return
        info, summary = report.info, report.summary
        self.header.setText(
            f"<b>{inline_markdown(report.folder.name)}</b> — {summary.questions} questions, "
            f"{summary.answered} of {summary.expected} answers; model {inline_markdown(info.model)}; "
            f"collection {inline_markdown(info.collection or '– (no documents)')}; greedy, at "
            f"most {info.sampling.get('max_tokens')} answer tokens.")
        self.model.set_rows(summary.arms)
        self._fit_height()
        self.recommendation.setText(
            "<p><b>Recommendation</b></p><ul>"
            + "".join(f"<li>{inline_markdown(line)}</li>" for line in summary.recommendation)
            + "</ul>")

    def _fit_height(self) -> None:
        """As tall as its rows (a few arms): the recommendation gets the room below."""
        table = self.table
        table.resizeRowsToContents()
        rows = sum(table.rowHeight(r) for r in range(self.model.rowCount()))
        # Room for a horizontal scroll bar too: whether one shows is known only after layout.
        scroll = table.horizontalScrollBar().sizeHint().height()
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + rows
                             + 2 * table.frameWidth() + scroll)

    def arm_cells(self) -> list[tuple[str, ...]]:
        """The table's text, row by row (what a reader sees)."""
        return [self.model.cells(s) for s in self.model.rows()]
