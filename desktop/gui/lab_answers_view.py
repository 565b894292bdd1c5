"""The Lab page's side-by-side view: a run's questions (all, where the arms disagree, or wrong
everywhere) and, for the one picked, each arm's answer in a column of its own, marked right or
wrong, with what it cited, under the question and its gold answers."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui.style import tone
from bastion.desktop.gui.table_model import HeaderedTableModel, Index
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.runs import FILTERS, QuestionFilter, QuestionRow, RunReport
from bastion.desktop.lab.summary import ScoredAnswer


class QuestionTableModel(HeaderedTableModel):
    """The questions that pass the filter and how many arms got each right (ids, often long
    hashes, are in the tooltip and above the answers)."""

    HEADERS = ("Question", "Right")

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[QuestionRow] = []

    def rows(self) -> list[QuestionRow]:
        return self._rows

    def set_rows(self, rows: list[QuestionRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 0:
                return row.question.question
            return f"{row.right}/{len(row.answered)}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{row.question.id}: {row.question.question}"
        return None


class ArmColumn(QFrame):
    """One arm's answer to the question shown: verdict, answer text, citations, time."""

    def __init__(self, arm: Arm, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.arm = arm
        self.setObjectName("labArmColumn")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumWidth(170)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.title = QLabel(f"<b>{escape(arm.label)}</b>")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.verdict = QLabel("")
        self.verdict.setObjectName("labVerdict")
        layout.addWidget(self.verdict)
        self.answer = QTextBrowser()
        self.answer.setObjectName("labAnswer")
        self.answer.setOpenLinks(False)
        layout.addWidget(self.answer, 1)
        self.citations = QLabel("")
        self.citations.setObjectName("labCitations")
        self.citations.setWordWrap(True)
        self.citations.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.citations)

    def show_answer(self, answer: ScoredAnswer | None) -> None:
        if answer is None:
            self.verdict.setText("not answered yet")
            self.verdict.setStyleSheet("")
            self.answer.setPlainText("")
            self.citations.setText("")
            return
        right = answer.scores.correct
        declined = " (declined)" if answer.scores.abstained else ""
        self.verdict.setText(("✓ right" if right else "✗ wrong") + declined)
        colour = tone("right" if right else "wrong", self.verdict.palette())
        self.verdict.setStyleSheet(f"color: {colour}; font-weight: bold;")
        self.answer.setPlainText(answer.record.answer)
        cited = [p for p in answer.record.passages if p.cited]
        given = len(answer.record.passages)
        if cited:
            lines = [f"[{p.n}] {p.path.rsplit('/', 1)[-1]}" + (f" p. {p.page}" if p.page else "")
                     for p in cited]
            text = "Cites: " + ", ".join(lines)
        elif given:
            text = f"Cites none of the {given} passages it was given."
        else:
            text = "No passages (model alone)." if not self.arm.uses_documents else "No passage found."
        self.citations.setText(f"{text}  ·  {answer.record.seconds:.1f} s")


class AnswersPanel(QWidget):
    """Questions with a filter on the left; the picked question's answers by arm on the right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report: RunReport | None = None
        self.columns: list[ArmColumn] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        self.filter = QComboBox()
        self.filter.setObjectName("labQuestionFilter")
        for key, text in FILTERS.items():
            self.filter.addItem(text, key)
        self.filter.currentIndexChanged.connect(lambda _i: self._refilter())
        top.addWidget(self.filter)
        self.count = QLabel("")
        self.count.setObjectName("labQuestionCount")
        top.addWidget(self.count)
        top.addStretch(1)
        layout.addLayout(top)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.model = QuestionTableModel()
        self.table = QTableView()
        self.table.setObjectName("labQuestions")
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.selectionModel().currentRowChanged.connect(
            lambda current, _previous: self.show_question(current.row()))
        split.addWidget(self.table)

        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        self.question = QLabel("Pick a question to compare the arms' answers.")
        self.question.setObjectName("labQuestion")
        self.question.setWordWrap(True)
        self.question.setTextFormat(Qt.TextFormat.RichText)
        self.question.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(self.question)
        self.arms_area = QScrollArea()
        self.arms_area.setWidgetResizable(True)
        self.arms_holder = QWidget()
        self.arms_row = QHBoxLayout(self.arms_holder)
        self.arms_row.setContentsMargins(0, 0, 0, 0)
        self.arms_area.setWidget(self.arms_holder)
        column.addWidget(self.arms_area, 1)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([260, 780])
        layout.addWidget(split, 1)

    # -- filling -------------------------------------------------------------------------

    def show_report(self, report: RunReport | None) -> None:
        """Show ``report``'s questions (the filter kept); the first one is picked."""
        self.report = report
        for old in self.columns:
            self.arms_row.removeWidget(old)
            old.deleteLater()
        self.columns = [ArmColumn(arm) for arm in (report.arms if report else [])]
        for widget in self.columns:
            self.arms_row.addWidget(widget, 1)
        self._refilter()

    def set_filter(self, which: QuestionFilter) -> None:
        self.filter.setCurrentIndex(self.filter.findData(which))

    @property
    def which(self) -> QuestionFilter:
        value: QuestionFilter = self.filter.currentData()
        return value

    def _refilter(self) -> None:
        rows = self.report.questions(self.which) if self.report else []
        self.model.set_rows(rows)
        total = len(self.report.rows) if self.report else 0
        self.count.setText(f"{len(rows)} of {total} questions" if self.report else "")
        if rows:
            self.table.selectRow(0)
            self.show_question(0)
        else:
            self.show_question(-1)

    def show_question(self, row: int) -> None:
        """Show the answers to the ``row``-th question of the filtered list (-1: none)."""
        rows = self.model.rows()
        if not 0 <= row < len(rows):
            self.question.setText("No question matches this filter." if self.report else
                                  "Pick a run to compare its arms' answers.")
            for widget in self.columns:
                widget.show_answer(None)
            return
        item = rows[row]
        q = item.question
        if q.unanswerable:
            gold = ("<i>Unanswerable: the documents do not hold the answer, so declining is "
                    "right.</i>")
        else:
            gold = "Gold answers: " + " | ".join(f"<b>{escape(a)}</b>" for a in q.answers)
        source = f"<br>Source: {escape(q.source)}" if q.source else ""
        self.question.setText(f"<p><b>{escape(q.id)}</b>: {escape(q.question)}</p>"
                              f"<p>{gold}{source}</p>")
        for widget, answer in zip(self.columns, item.answers, strict=True):
            widget.show_answer(answer)

    def shown_answers(self) -> dict[str, tuple[str, str]]:
        """Arm label → (verdict, answer text) as shown for the current question."""
        return {c.arm.label: (c.verdict.text(), c.answer.toPlainText()) for c in self.columns}
