"""The Lab page over the real lab use case (``run_session``) in the real core thread, with a fake
engine that reads the passages it is given and a real library (hashing embedder): a run to the
end and its report, cancel and continue, bad input refused before any model loads, the answers
side by side with their filters, and the HTML report opened."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

from bastion.desktop.gui.lab_view import LabView
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.lab.run_folder import RunFolder
from bastion.desktop.library import add_collection
from bastion.desktop.paths import data_paths
from bastion.models.engine_types import AdapterUse, ChatEvent, Sampling
from tests.gui.conftest import RecordingReporter
from tests.gui.fakes import StreamingEngine, fake_library

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

CAPITALS = {"France": "Paris", "Italy": "Rome", "Germany": "Berlin", "Peru": "Lima"}


class ReadingEngine(StreamingEngine):
    """Answers with the capital the passages give for the country asked about; without that
    passage it guesses Berlin (right only for Germany). Records the threads it answers in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def chat(self, messages: Sequence[dict[str, str]], sampling: Sampling | None = None,
             adapters: Sequence[AdapterUse] = ()) -> Iterator[ChatEvent]:
        self.threads.append(threading.current_thread())
        prompt = messages[-1]["content"]
        asked = re.search(r"capital of (\w+)\?", prompt)
        country = asked.group(1) if asked else ""
        capital = CAPITALS.get(country)
        if capital and f"The capital of {country} is {capital}." in prompt:
            self.reply = f"It is {capital} [1]."
        else:
            self.reply = "I think it is Berlin."
        yield from super().chat(messages, sampling, adapters)


@pytest.fixture
def engine() -> ReadingEngine:
    return ReadingEngine()


@pytest.fixture
def atlas(tmp_path: Path) -> str:
    """The collection "atlas", indexed: one file per country ("empty" has no documents)."""
    docs = tmp_path / "atlas"
    docs.mkdir()
    for country, capital in CAPITALS.items():
        (docs / f"{country}.txt").write_text(f"The capital of {country} is {capital}.\n",
                                             encoding="utf-8")
    (tmp_path / "nothing").mkdir()
    library = fake_library(data_paths())
    add_collection(library, "atlas", [docs])
    add_collection(library, "empty", [tmp_path / "nothing"])
    list(library.sync("atlas"))
    library.close()
    return "atlas"


def question_set(path: Path, extra: Sequence[object] = ()) -> Path:
    rows: list[object] = [
        {"id": country.lower(), "question": f"What is the capital of {country}?",
         "answers": [capital], "source": f"{country}.txt"}
        for country, capital in CAPITALS.items()]
    rows.append({"id": "atlantis", "question": "What is the capital of Atlantis?",
                 "answers": ["Poseidonia"]})
    rows.extend(extra)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


class OpenedUrls(list[QUrl]):
    def __call__(self, url: QUrl) -> bool:
        self.append(url)
        return True


@pytest.fixture
def opened() -> OpenedUrls:
    return OpenedUrls()


@pytest.fixture
def view(qtbot, make_backend, atlas: str, opened: OpenedUrls, tmp_path: Path) -> Iterator[LabView]:
    """The page on its own, its thread and the backend's started; "atlas" chosen, model and
    documents arms."""
    backend = make_backend()
    backend.start()
    page = LabView(backend, data_paths(), open_url=opened)
    qtbot.addWidget(page)
    page.show()
    page.start()
    page.set_collection_names(["atlas", "empty"])
    page.collection_combo.setCurrentIndex(page.collection_combo.findData("atlas"))
    page.mode_boxes["both"].setChecked(False)
    page.questions_edit.setText(str(question_set(tmp_path / "capitals.jsonl")))
    yield page
    assert page.stop()


def idle(view: LabView) -> bool:
    return view.state == "idle"


def run_to_the_end(qtbot, view: LabView) -> None:
    view.run_button.click()
    qtbot.waitUntil(lambda: idle(view) and view.report is not None
                    and view.report.summary.answered == 10, timeout=20000)


def test_a_run_goes_to_the_end_and_shows_its_report(
        qtbot, view: LabView, engine: ReadingEngine, opened: OpenedUrls) -> None:
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()
    run_to_the_end(qtbot, view)
    assert engine.threads and threading.main_thread() not in engine.threads
    assert view.status.text().startswith("Finished: 10 answers in capitals")
    assert "10/10" not in view.arm_progress.text()  # per arm: 5 questions each
    assert view.arm_progress.text().count("5/5") == 2

    [listing] = view.listings
    assert listing.path == data_paths().lab_dir.resolve() / "capitals" and listing.finished
    assert view.run_list.item(0).text().endswith("10/10 answers, 2 arms")
    cells = view.report_panel.arm_cells()
    assert [row[0] for row in cells] == ["base", "base + documents"]
    # Model alone: only Germany (its guess); with documents: the four that have a file.
    assert cells[0][1].startswith("20% [") and cells[1][1].startswith("80% [")
    assert cells[1][2] == "100% (4/4)"  # citation hit
    assert cells[0][6] == cells[1][6] == "5"
    recommendation = view.report_panel.recommendation.text()
    assert "Recommended route" in recommendation and "<strong>base + documents</strong>" in recommendation

    view.report_panel.open_button.click()
    qtbot.waitUntil(lambda: len(opened) == 1, timeout=10000)
    report = Path(opened[0].toLocalFile())
    assert report == listing.path / "report.html"
    assert "Lab report" in report.read_text(encoding="utf-8")


def test_cancel_keeps_the_answers_and_running_again_continues(
        qtbot, view: LabView, engine: ReadingEngine) -> None:
    engine.delay_s = 0.05  # a few words each: a quarter of a second per answer
    view.run_button.click()
    qtbot.waitUntil(lambda: view.progress_state.done >= 3, timeout=20000)
    assert "of 10 answers" in view.status.text() and "left" in view.status.text()
    view.cancel_button.click()
    assert view.state == "stopping" and not view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: idle(view), timeout=20000)
    folder = RunFolder(data_paths().lab_dir / "capitals")
    kept = folder.answers()
    assert 3 <= len(kept) < 10
    assert view.status.text().startswith(f"Stopped at {len(kept)} of 10 answers; they are kept")
    qtbot.waitUntil(lambda: view.report is not None and view.report.summary.answered == len(kept),
                    timeout=10000)
    assert view.run_list.item(0).text().endswith("(not finished)")

    engine.delay_s = 0.0
    calls = len(engine.threads)
    run_to_the_end(qtbot, view)
    answers = folder.answers()
    assert len({(a.question_id, a.arm) for a in answers}) == len(answers) == 10
    assert answers[: len(kept)] == kept  # nothing asked twice
    assert len(engine.threads) - calls <= 10 - len(kept)
    assert [listing.path.name for listing in view.listings] == ["capitals"]


@pytest.mark.parametrize(("problem", "message"), [
    ("duplicate id", "line 6: the id 'france' is already used on line 1"),
    ("missing field", "line 6: the field 'answers' is missing"),
    ("unknown collection", "There is no collection named 'nowhere'"),
    ("empty collection", "The collection 'empty' has no indexed passages"),
])
def test_bad_input_is_refused_with_the_use_cases_words_before_any_model_loads(
        qtbot, view: LabView, engine: ReadingEngine, reporter: RecordingReporter,
        tmp_path: Path, problem: str, message: str) -> None:
    extra: list[object] = []
    if problem == "duplicate id":
        extra = [{"id": "france", "question": "Again?", "answers": ["Paris"]}]
    elif problem == "missing field":
        extra = [{"question": "Where?"}]
    elif problem == "unknown collection":
        view.set_collection_names(["atlas", "empty", "nowhere"])  # removed since it was listed
        view.collection_combo.setCurrentIndex(view.collection_combo.findData("nowhere"))
    else:
        view.collection_combo.setCurrentIndex(view.collection_combo.findData("empty"))
    view.questions_edit.setText(str(question_set(tmp_path / "bad.jsonl", extra)))
    view.run_button.click()
    qtbot.waitUntil(lambda: idle(view) and bool(reporter.shown), timeout=10000)
    assert message in view.status.text() and view.status.text().startswith("Not started: ")
    assert reporter.shown[-1].known and message in reporter.shown[-1].text
    assert engine.loaded is None and engine.threads == []  # no model was loaded
    assert not data_paths().lab_dir.exists() or not any(data_paths().lab_dir.iterdir())


def test_the_answers_side_by_side_and_the_filters(qtbot, view: LabView) -> None:
    run_to_the_end(qtbot, view)
    panel = view.answers_panel
    assert panel.count.text() == "5 of 5 questions"
    ids = [row.question.id for row in panel.model.rows()]
    assert ids == ["france", "italy", "germany", "peru", "atlantis"]
    view.tabs.setCurrentWidget(panel)
    panel.table.selectRow(ids.index("france"))
    assert "What is the capital of France?" in panel.question.text()
    assert "Gold answers: <b>Paris</b>" in panel.question.text()
    assert panel.shown_answers() == {"base": ("✗ wrong", "I think it is Berlin."),
                                     "base + documents": ("✓ right", "It is Paris [1].")}
    base, docs = panel.columns
    assert base.citations.text().startswith("No passages (model alone).")
    assert docs.citations.text().startswith("Cites: [1] France.txt")

    panel.set_filter("disagree")  # Germany is right in both arms, Atlantis wrong in both
    assert [row.question.id for row in panel.model.rows()] == ["france", "italy", "peru"]
    assert panel.count.text() == "3 of 5 questions"
    panel.set_filter("wrong")
    assert [row.question.id for row in panel.model.rows()] == ["atlantis"]
    assert panel.shown_answers()["base + documents"][0].startswith("✗ wrong")
    panel.set_filter("all")
    assert len(panel.model.rows()) == 5


def test_a_run_folder_from_the_command_line_can_be_opened(qtbot, view: LabView,
                                                         tmp_path: Path) -> None:
    run_to_the_end(qtbot, view)
    elsewhere = tmp_path / "cli-run"
    (data_paths().lab_dir / "capitals").rename(elsewhere)
    view.open_run_folder(elsewhere)
    qtbot.waitUntil(lambda: view.report is not None and view.report.folder == elsewhere,
                    timeout=10000)
    assert [listing.path for listing in view.listings] == [elsewhere.resolve()]


def test_the_window_has_the_lab_page(qtbot, window: MainWindow) -> None:
    page = window.pages["lab"]
    assert window.tabs.tabText(window.tabs.indexOf(page)) == "Lab"
    assert page.worker.isRunning()
    assert page.run_list.item(0).text().startswith("No runs yet")
