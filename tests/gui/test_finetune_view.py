"""The Fine-tune page over the real training use case with a scripted stand-in for the training
process (no real training): the live loss curve and status line, Cancel and Resume, bad data
reported before a run starts, a failed run, and Merge off the GUI thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.desktop.finetuning import run_folder
from bastion.desktop.gui.finetune_tasks import LossHistory, checkpoint_history, has_checkpoint
from bastion.desktop.gui.finetune_view import FinetuneView
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.paths import DataPaths, data_paths
from bastion.models.catalog import Catalog
from bastion.models.finetune_types import (
    Cancelled,
    Evaluated,
    FinetuneConfig,
    FinetuneError,
    Finished,
    Loading,
    Prepared,
    StepDone,
)
from tests.models.adapter_fixtures import tiny_lora, write_base_gguf

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


class FakeRuns:
    """Makes ``FakeProcess``es (the page's ``process`` factory) and holds their script."""

    def __init__(self) -> None:
        self.steps = 6
        self.delay_s = 0.01
        self.eval_every = 2
        self.fail_at: int | None = None  # the run fails (as a full disk would) before this step
        self.hold = threading.Event()  # cleared: the run waits after its last step
        self.hold.set()
        self.made: list[FakeProcess] = []

    def __call__(self, config: FinetuneConfig) -> FakeProcess:
        self.made.append(FakeProcess(config, self))
        return self.made[-1]

    @property
    def configs(self) -> list[FinetuneConfig]:
        return [run.config for run in self.made]


class FakeProcess:
    """Stands in for ``FinetuneProcess`` under the real ``finetuning.train``: scripted events, a
    small sleep per step. Cancelled, it keeps a checkpoint and says ``Cancelled`` as the real
    process does; at the end it writes a real (tiny) adapter, which ``train`` registers."""

    def __init__(self, config: FinetuneConfig, script: FakeRuns) -> None:
        self.config = config
        self.script = script
        self.cancel_requested = threading.Event()
        self.steps_done = 0
        self.thread: threading.Thread | None = None
        self.closed = False

    def cancel(self) -> None:
        self.cancel_requested.set()

    def events(self) -> Iterator[Any]:
        config, script = self.config, self.script
        self.thread = threading.current_thread()
        checkpoint = config.work_dir / "checkpoint"
        start = 0
        if config.resume:
            start = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))["step"]
        yield Loading("model", config.base.name)
        yield Prepared(train_examples=9, held_out_examples=1, too_long_examples=0,
                       total_steps=script.steps, start_step=start, trainable_parameters=2_400_000,
                       gradient_checkpointing=False, load_s=0.1)
        for step in range(start + 1, script.steps + 1):
            time.sleep(script.delay_s)
            if self.cancel_requested.is_set() or step == script.fail_at:
                self._keep(checkpoint, step - 1)
                if step == script.fail_at:
                    raise FinetuneError("The disk is full: free some space, then resume.")
                yield Cancelled(step - 1, str(checkpoint))
                return
            self.steps_done = step
            yield StepDone(step=step, total_steps=script.steps, epoch=1, loss=3.0 / step,
                           learning_rate=5e-4, tokens=120, tokens_per_s=180.0, s_per_step=0.5,
                           eta_s=125.0, peak_rss_mb=1536.0)
            if step % script.eval_every == 0:
                yield Evaluated(step=step, held_out_loss=2.0 / step)
        script.hold.wait(10)
        tiny_lora(config.output)
        config.record_path.write_text(json.dumps({"steps": script.steps}), encoding="utf-8")
        yield Finished(adapter=str(config.output), record=str(config.record_path),
                       steps=script.steps, final_loss=3.0 / script.steps, held_out_loss=0.4,
                       wall_s=3.0, peak_rss_mb=1536.0, adapter_bytes=config.output.stat().st_size)

    def _keep(self, checkpoint: Path, step: int) -> None:
        """A checkpoint's state as the real run writes it (its curves, for the page)."""
        checkpoint.mkdir(parents=True, exist_ok=True)
        every = self.script.eval_every
        checkpoint.joinpath("state.json").write_text(json.dumps({
            "step": step, "loss_curve": [[n, 3.0 / n] for n in range(1, step + 1)],
            "held_out_curve": [[n, 2.0 / n] for n in range(every, step + 1, every)],
        }), encoding="utf-8")

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeMerge:
    """Stands in for ``finetuning.merge``: records its call and the thread it ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, paths: DataPaths, adapter: str, **options: Any) -> Path:
        self.calls.append((adapter, options))
        self.threads.append(threading.current_thread())
        return paths.models_dir / f"Tiny-{adapter}.{options['quantization']}.gguf"


def write_chat_jsonl(path: Path, lines: int = 10, bad_line: int | None = None) -> Path:
    rows = []
    for n in range(1, lines + 1):
        if n == bad_line:
            rows.append('{"messages": [{"role": "user", "content": "no reply"}')
        else:
            rows.append(json.dumps({"messages": [
                {"role": "user", "content": f"What is fact {n}?"},
                {"role": "assistant", "content": f"Fact {n} is {n * 7}."}]}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


@pytest.fixture
def merging() -> FakeMerge:
    return FakeMerge()


@pytest.fixture
def base_model(bastion_home: Path) -> Path:
    """A tiny llama-style base in the models folder that ``tiny_lora`` adapters fit."""
    return write_base_gguf(bastion_home / "models" / "Tiny-Base.gguf")


@pytest.fixture
def view(qtbot, make_backend, runs: FakeRuns, merging: FakeMerge, embedded_gguf: Path,
         base_model: Path, tmp_path: Path) -> Iterator[FinetuneView]:
    """The page on its own over the real use cases, its thread started, the tiny base chosen."""
    paths = data_paths()
    page = FinetuneView(make_backend(), paths, merge=merging, process=runs)
    qtbot.addWidget(page)
    page.show()
    page.start()
    page.set_models(Catalog(paths.models_dir, embedded_path=embedded_gguf).entries())
    page.base_combo.setCurrentIndex(page.base_combo.findData(str(base_model)))
    page.set_data_file(write_chat_jsonl(tmp_path / "facts.jsonl"))
    yield page
    assert page.stop()


def idle(view: FinetuneView) -> bool:
    return view.state == "idle"


def test_the_curve_gets_a_point_per_step_and_the_held_out_points(
        qtbot, view: FinetuneView, runs: FakeRuns, base_model: Path, embedded_gguf: Path,
        bastion_home: Path) -> None:
    assert view.name_edit.text() == "facts"  # named after the data file
    assert [view.base_combo.itemData(i) for i in range(view.base_combo.count())] == [
        str(embedded_gguf), str(base_model)]
    runs.hold.clear()
    view.start_training()
    qtbot.waitUntil(lambda: "held-out loss 0.333" in view.status.text(), timeout=10000)

    steps, losses = view.plot.training.getData()
    assert list(steps) == [1, 2, 3, 4, 5, 6]
    assert losses[-1] == pytest.approx(0.5)
    held_steps, held_losses = view.plot.held_out.getData()
    assert list(held_steps) == [2, 4, 6]
    assert list(held_losses) == pytest.approx([1.0, 0.5, 2.0 / 6])
    status = view.status.text()
    assert "Step 6/6 · loss 0.500 · 180 tokens/s" in status
    assert "ETA 2 min 05 s" in status and "peak RSS 1.5 GB" in status
    assert view.progress.value() == 6 and view.progress.maximum() == 6

    with qtbot.waitSignal(view.adapter_registered, timeout=10000) as registered:
        runs.hold.set()
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert view.status.text().startswith("Done: 6 steps")
    config = runs.configs[0]
    assert (config.name, config.base, config.resume) == ("facts", base_model, False)
    assert runs.made[0].thread is not threading.main_thread()  # never the GUI thread
    entry = registered.args[0]
    assert entry.id == "facts" and entry.base is not None and entry.base.model == "Tiny-Base"
    adapters = bastion_home / "models" / "adapters"
    assert (adapters / "facts.gguf").is_file() and (adapters / "facts.training.json").is_file()
    assert view.adapter_id == "facts" and "facts is ready" in view.result.text()
    assert view.merge_button.isVisible() and view.merge_button.isEnabled()
    lines = [view.log.item(i).text() for i in range(view.log.count())]
    assert lines[0] == "10 conversations in facts.jsonl; base Tiny-Base.gguf"
    assert "held-out loss 0.500 at step 4" in lines
    assert lines[-1].startswith("registered the adapter facts")


def test_an_adapter_on_all_projections_is_asked_for_from_the_form(
        qtbot, view: FinetuneView, runs: FakeRuns) -> None:
    assert view.targets.currentData() == "attention"  # the default keeps answers fast
    view.targets.setCurrentIndex(view.targets.findData("all"))
    view.start_training()
    qtbot.waitUntil(lambda: bool(runs.configs), timeout=10000)
    assert runs.configs[0].targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj")
    assert not view.targets.isEnabled()  # fixed while the run goes
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert view.targets.isEnabled()


def test_start_is_disabled_while_a_run_goes(qtbot, view: FinetuneView, runs: FakeRuns) -> None:
    runs.steps, runs.delay_s = 20, 0.02
    view.start_training()
    assert not view.start_button.isEnabled() and view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(runs.made) and runs.made[0].steps_done >= 2, timeout=10000)
    assert not view.start_button.isEnabled()
    assert not view.name_edit.isEnabled() and not view.resume.isEnabled()
    view.start_training()  # ignored: one run at a time
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert len(runs.made) == 1
    assert view.start_button.isEnabled() and not view.cancel_button.isEnabled()


def test_cancel_stops_the_run_keeps_its_checkpoint_and_offers_resume(
        qtbot, view: FinetuneView, runs: FakeRuns, bastion_home: Path) -> None:
    runs.steps, runs.delay_s = 1000, 0.02
    assert not view.resume.isEnabled()
    view.start_training()
    qtbot.waitUntil(lambda: len(view.history.steps) >= 3, timeout=10000)
    view.cancel()
    assert "Stopping" in view.status.text() and not view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: idle(view), timeout=10000)

    run = runs.made[0]
    assert run.cancel_requested.is_set() and run.closed and run.steps_done < 1000
    assert has_checkpoint(data_paths(), "facts")
    assert view.resume.isEnabled() and view.resume.isChecked()
    assert f"Stopped after step {run.steps_done}. The checkpoint is kept" in view.result.text()
    assert view.log.item(view.log.count() - 1).text().startswith(
        f"cancelled at step {run.steps_done}; checkpoint kept")
    assert view.adapter_id is None and not view.merge_button.isVisible()
    assert not (bastion_home / "models" / "adapters" / "facts.gguf").exists()

    stopped_at = run.steps_done
    runs.steps, runs.delay_s = stopped_at + 3, 0.0
    view.start_training()
    qtbot.waitUntil(lambda: idle(view) and view.adapter_id == "facts", timeout=10000)
    assert runs.configs[-1].resume is True and not runs.made[-1].cancel_requested.is_set()
    # The curve goes on from the checkpoint's: every step once, the held-out points kept.
    assert list(view.plot.training.getData()[0]) == list(range(1, stopped_at + 4))
    assert list(view.plot.held_out.getData()[0]) == list(range(2, stopped_at + 4, 2))
    assert "resuming at" in view.log.item(2).text()


def test_closing_the_page_cancels_a_run(qtbot, view: FinetuneView, runs: FakeRuns) -> None:
    runs.steps, runs.delay_s = 1000, 0.02
    view.start_training()
    qtbot.waitUntil(lambda: len(view.history.steps) >= 2, timeout=10000)
    assert view.stop()
    assert runs.made[0].cancel_requested.is_set() and runs.made[0].closed
    assert has_checkpoint(data_paths(), "facts")


def test_a_failed_run_is_reported_and_its_checkpoint_offered(
        qtbot, view: FinetuneView, runs: FakeRuns, reporter) -> None:
    runs.fail_at = 4
    view.start_training()
    qtbot.waitUntil(lambda: bool(reporter.shown) and idle(view), timeout=10000)
    assert reporter.shown[-1].title == "Could not fine-tune facts"
    assert reporter.shown[-1].text == "The disk is full: free some space, then resume."
    assert view.result.text().startswith("The training stopped with an error after step 3. "
                                         "The checkpoint is kept")
    assert view.resume.isEnabled() and view.resume.isChecked()


def test_a_bad_line_is_reported_before_training_starts(
        qtbot, view: FinetuneView, runs: FakeRuns, reporter, tmp_path: Path) -> None:
    view.set_data_file(write_chat_jsonl(tmp_path / "broken.jsonl", bad_line=3))
    view.start_training()
    qtbot.waitUntil(lambda: bool(reporter.shown) and idle(view), timeout=10000)
    report = reporter.shown[-1]
    assert report.known and report.title == "Could not check the training data"
    assert report.text.startswith("Line 3 of the training data is unusable")
    assert runs.made == []  # nothing was started
    assert view.start_button.isEnabled() and "Line 3" in view.result.text()


def test_a_bad_name_and_a_missing_file_are_reported(qtbot, view: FinetuneView, runs: FakeRuns,
                                                    reporter, tmp_path: Path) -> None:
    view.name_edit.setText("no spaces allowed")
    view.start_training()
    qtbot.waitUntil(lambda: bool(reporter.shown) and idle(view), timeout=10000)
    assert "cannot name an adapter" in reporter.shown[-1].text
    view.name_edit.setText("facts")
    view.data_edit.setText(str(tmp_path / "missing.jsonl"))
    view.start_training()
    qtbot.waitUntil(lambda: len(reporter.shown) == 2 and idle(view), timeout=10000)
    assert "missing.jsonl" in reporter.shown[-1].text
    assert runs.made == []


def test_merge_runs_off_the_gui_thread(qtbot, view: FinetuneView, merging: FakeMerge) -> None:
    with qtbot.waitSignal(view.adapter_registered, timeout=10000):
        view.start_training()
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    with qtbot.waitSignal(view.model_merged, timeout=10000) as merged:
        view.merge("facts", quantization="Q4_1", scale=0.8)
    assert merging.calls == [("facts", {"scale": 0.8, "quantization": "Q4_1", "model_name": None})]
    assert merging.threads[0] is not threading.main_thread()
    assert merged.args[0].name == "Tiny-facts.Q4_1.gguf"
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert "Registered the model Tiny-facts.Q4_1" in view.result.text()


def test_the_window_has_the_page_with_the_catalog_bases(qtbot, window: MainWindow,
                                                        embedded_gguf: Path) -> None:
    page = window.pages["finetune"]
    assert window.tabs.tabText(window.tabs.indexOf(page)) == "Fine-tune"
    qtbot.waitUntil(lambda: page.base_combo.currentData() == str(embedded_gguf), timeout=10000)
    assert page.base_combo.currentText() == "SmolLM2-135M-Instruct.Q4_1 (embedded)"
    assert page.worker.isRunning()


def test_a_damaged_checkpoint_state_still_offers_resume_with_an_empty_curve() -> None:
    paths = data_paths()
    state = run_folder(paths, "facts") / "work" / "checkpoint.old" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"step": 3, "loss_curve": [[1, 2.5], [2, "x"]', encoding="utf-8")
    assert has_checkpoint(paths, "facts")  # the run itself says what is wrong with it
    assert checkpoint_history(paths, "facts") == LossHistory()
    assert not has_checkpoint(paths, "../facts") and not has_checkpoint(paths, "")


def test_grounded_training_builds_its_examples_from_the_chosen_collection(
        qtbot, view: FinetuneView, runs: FakeRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.desktop import library as library_use_case
    from bastion.desktop.cli import main
    from tests.store.fakes import CountingParser, HashingEmbedder

    parser, embedder = CountingParser(), HashingEmbedder()
    monkeypatch.setattr(library_use_case, "default_embedder", lambda folder: embedder)
    monkeypatch.setattr(library_use_case, "default_parse_pool", parser.pool)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "orvane.txt").write_text("The harbour is old. The lighthouse of Orvane is painted blue.\n")
    (docs / "tallow.txt").write_text("The river Tallow flows north into the Grey Sea.\n")
    assert main(["library", "add", "lore", str(docs)]) == 0
    questions = tmp_path / "lore-questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question": "What colour is the lighthouse of Orvane?", "answers": ["blue"]},
        {"question": "Which way does the river Tallow flow?", "answers": ["north"]}]) + "\n")

    view.set_collection_names(["lore"])
    assert view.collection_combo.count() == 2
    view.collection_combo.setCurrentIndex(view.collection_combo.findData("lore"))
    assert "question set" in view.data_edit.placeholderText()
    view.set_data_file(questions)
    view.name_edit.setText("lore")
    view.start_training()
    qtbot.waitUntil(lambda: idle(view), timeout=20000)
    config = runs.configs[0]
    assert config.data.name == "grounded.jsonl" and config.data.parent.name == "lore"
    lines = [view.log.item(i).text() for i in range(view.log.count())]
    assert lines[0].startswith("2 grounded examples from 2 questions")
    # Renewing the list keeps the choice; a collection that went away falls back to chat data.
    view.set_collection_names(["lore", "other"])
    assert view.collection_combo.currentData() == "lore"
    view.set_collection_names([])
    assert view.collection_combo.currentData() is None and "chat" in view.data_edit.placeholderText()
