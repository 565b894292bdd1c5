"""The Fine-tune page over a scripted stand-in for the training use case (no real training):
the live loss curve and status line, Cancel and Resume, bad data reported before a run starts,
and Merge off the GUI thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.desktop.finetuning import Registered
from bastion.desktop.gui.finetune_tasks import has_checkpoint
from bastion.desktop.gui.finetune_view import FinetuneView
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.paths import DataPaths, data_paths
from bastion.models.adapter_catalog import AdapterEntry
from bastion.models.catalog import Catalog
from bastion.models.finetune_types import (
    Evaluated,
    FinetuneConfig,
    Finished,
    Loading,
    Prepared,
    StepDone,
)

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


class FakeTraining:
    """Stands in for ``finetuning.train``: scripted events with a small sleep per step.

    It records the configurations it was called with, the thread that ran it and whether its
    generator was closed (a Cancel); closed, it leaves a checkpoint as the real run does.
    """

    def __init__(self, steps: int = 6, delay_s: float = 0.01, eval_every: int = 2) -> None:
        self.steps = steps
        self.delay_s = delay_s
        self.eval_every = eval_every
        self.configs: list[FinetuneConfig] = []
        self.threads: list[threading.Thread] = []
        self.steps_done = 0
        self.closed = False
        self.hold = threading.Event()  # cleared: the run waits after its last step
        self.hold.set()

    def __call__(self, paths: DataPaths, config: FinetuneConfig) -> Iterator[Any]:
        self.configs.append(config)
        self.threads.append(threading.current_thread())
        return self._events(config)

    def _events(self, config: FinetuneConfig) -> Iterator[Any]:
        try:
            yield Loading("model", "SmolLM2")
            yield Prepared(train_examples=9, held_out_examples=1, too_long_examples=0,
                           total_steps=self.steps, start_step=0, trainable_parameters=2_400_000,
                           gradient_checkpointing=False, load_s=0.1)
            for step in range(1, self.steps + 1):
                time.sleep(self.delay_s)
                self.steps_done = step
                yield StepDone(step=step, total_steps=self.steps, epoch=1, loss=3.0 / step,
                               learning_rate=5e-4, tokens=120, tokens_per_s=180.0,
                               s_per_step=0.5, eta_s=125.0, peak_rss_mb=1536.0)
                if step % self.eval_every == 0:
                    yield Evaluated(step=step, held_out_loss=2.0 / step)
            self.hold.wait(10)
            finished = Finished(adapter=str(config.output), record=str(config.record_path),
                                steps=self.steps, final_loss=3.0 / self.steps, held_out_loss=0.4,
                                wall_s=3.0, peak_rss_mb=1536.0, adapter_bytes=4_000_000)
            yield finished
            yield Registered(AdapterEntry(
                id=config.name, name=config.name, path=config.output, origin="imported",
                file_size=4_000_000, info=None, error=None, sha256=None, expected_sha256=None,
                verified="unchecked", base=None, imported_at=None), finished)
        except GeneratorExit:
            self.closed = True
            (config.work_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
            raise


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
def training() -> FakeTraining:
    return FakeTraining()


@pytest.fixture
def merging() -> FakeMerge:
    return FakeMerge()


@pytest.fixture
def view(qtbot, make_backend, training: FakeTraining, merging: FakeMerge, embedded_gguf: Path,
         tmp_path: Path) -> Iterator[FinetuneView]:
    """The page on its own, its thread started, the tiny embedded model as the base."""
    paths = data_paths()
    page = FinetuneView(make_backend(), paths, train=training, merge=merging)
    qtbot.addWidget(page)
    page.show()
    page.start()
    page.set_models(Catalog(paths.models_dir, embedded_path=embedded_gguf).entries())
    page.set_data_file(write_chat_jsonl(tmp_path / "facts.jsonl"))
    yield page
    assert page.stop()


def idle(view: FinetuneView) -> bool:
    return view.state == "idle"


def test_the_curve_gets_a_point_per_step_and_the_held_out_points(
        qtbot, view: FinetuneView, training: FakeTraining, embedded_gguf: Path) -> None:
    assert view.name_edit.text() == "facts"  # named after the data file
    assert view.base_combo.currentData() == str(embedded_gguf)
    training.hold.clear()
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
        training.hold.set()
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert status != view.status.text() and view.status.text().startswith("Done: 6 steps")
    config = training.configs[0]
    assert (config.name, config.base, config.resume) == ("facts", embedded_gguf, False)
    assert training.threads[0] is not threading.main_thread()  # never the GUI thread
    assert registered.args[0].id == "facts"
    assert view.adapter_id == "facts" and "facts is ready" in view.result.text()
    assert view.merge_button.isVisible() and view.merge_button.isEnabled()
    lines = [view.log.item(i).text() for i in range(view.log.count())]
    assert lines[0].startswith("10 conversations in facts.jsonl")
    assert any(line.startswith("held-out loss 0.500 at step 4") for line in lines)
    assert lines[-1].startswith("registered the adapter facts")


def test_start_is_disabled_while_a_run_goes(qtbot, view: FinetuneView,
                                            training: FakeTraining) -> None:
    training.steps, training.delay_s = 20, 0.02
    view.start_training()
    assert not view.start_button.isEnabled() and view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: training.steps_done >= 2, timeout=10000)
    assert not view.start_button.isEnabled()
    assert not view.name_edit.isEnabled() and not view.resume.isEnabled()
    view.start_training()  # ignored: one run at a time
    qtbot.waitUntil(lambda: idle(view), timeout=10000)
    assert len(training.configs) == 1
    assert view.start_button.isEnabled() and not view.cancel_button.isEnabled()


def test_cancel_closes_the_run_and_offers_resume(qtbot, view: FinetuneView,
                                                 training: FakeTraining) -> None:
    paths = data_paths()
    training.steps, training.delay_s = 1000, 0.02
    assert not view.resume.isEnabled()
    view.start_training()
    qtbot.waitUntil(lambda: view.plot.training.getData()[0] is not None
                    and len(view.plot.training.getData()[0]) >= 3, timeout=10000)
    view.cancel()
    assert "Stopping" in view.status.text()
    qtbot.waitUntil(lambda: idle(view), timeout=10000)

    assert training.closed and training.steps_done < 1000
    assert has_checkpoint(paths, "facts")
    assert view.resume.isEnabled() and view.resume.isChecked()
    assert "checkpoint is kept" in view.result.text()
    assert view.adapter_id is None and not view.merge_button.isVisible()

    training.steps, training.delay_s, training.closed = 3, 0.0, False
    view.start_training()
    qtbot.waitUntil(lambda: idle(view) and view.adapter_id == "facts", timeout=10000)
    assert training.configs[-1].resume is True and not training.closed


def test_a_bad_line_is_reported_before_training_starts(
        qtbot, view: FinetuneView, training: FakeTraining, reporter, tmp_path: Path) -> None:
    view.set_data_file(write_chat_jsonl(tmp_path / "broken.jsonl", bad_line=3))
    view.start_training()
    qtbot.waitUntil(lambda: bool(reporter.shown) and idle(view), timeout=10000)
    report = reporter.shown[-1]
    assert report.known and report.title == "Could not check the training data"
    assert report.text.startswith("Line 3 of the training data is unusable")
    assert training.configs == []  # nothing was started
    assert view.start_button.isEnabled() and "Line 3" in view.result.text()


def test_a_bad_name_and_a_missing_file_are_reported(qtbot, view: FinetuneView,
                                                    training: FakeTraining, reporter,
                                                    tmp_path: Path) -> None:
    view.name_edit.setText("no spaces allowed")
    view.start_training()
    qtbot.waitUntil(lambda: bool(reporter.shown) and idle(view), timeout=10000)
    assert "cannot name an adapter" in reporter.shown[-1].text
    view.name_edit.setText("facts")
    view.data_edit.setText(str(tmp_path / "missing.jsonl"))
    view.start_training()
    qtbot.waitUntil(lambda: len(reporter.shown) == 2 and idle(view), timeout=10000)
    assert "missing.jsonl" in reporter.shown[-1].text
    assert training.configs == []


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
    assert page.base_combo.currentText() == "Tiny Test Model (embedded)"
    assert page.worker.isRunning()
