"""How long does the window's event loop stall while the real parts work?

Opens the real main window (offscreen unless a display is set) on a throw-away data folder, with
SmolLM2 in the engine process and the real library (all-MiniLM-L6-v2, sandboxed parsing). A 5 ms
timer on the GUI thread records the gaps between its ticks during: loading the model at start-up,
streaming an answer, indexing a generated folder, and both at once, with the heap settled after
start-up as the application does. Prints a Markdown table (the target is a worst gap under 50 ms)
and the time of a full garbage collection before and after settling.

    .venv/bin/python bench/gui_stall_bench.py [--files 60] [--max-tokens 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOPICS = ["harbour", "orchard", "glacier", "foundry", "archive", "meadow", "observatory", "mill"]


@dataclass
class Row:
    phase: str
    seconds: float
    ticks: int
    worst_ms: float
    p99_ms: float
    p50_ms: float
    note: str


def write_folder(folder: Path, files: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        topic = TOPICS[i % len(TOPICS)]
        body = "\n\n".join(
            f"Paragraph {p} of note {i}: the {topic} log records item {i * 10 + p}, its state, "
            f"who checked it and when. Nothing unusual was found in section {p}."
            for p in range(12)
        )
        (folder / f"note_{i:04}.md").write_text(f"# Note {i} about the {topic}\n\n{body}\n",
                                                encoding="utf-8")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60, help="files in the generated folder")
    parser.add_argument("--max-tokens", type=int, default=200, help="longest answer")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bastion-stall-"))
    os.environ["BASTION_HOME"] = str(home)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    (home / "settings.json").write_text(json.dumps({"max_tokens": args.max_tokens,
                                                    "temperature": 0.0}))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    import bastion.desktop  # noqa: F401 - offline environment before any ML import
    from bastion.desktop.gui.application import real_factories
    from bastion.desktop.gui.backend import Backend
    from bastion.desktop.gui.error_dialogs import ErrorReporter
    from bastion.desktop.gui.main_window import MainWindow
    from bastion.desktop.gui.stall_meter import StallMeter
    from bastion.desktop.gui.style import apply_style
    from bastion.desktop.heap import settle_heap

    app = QApplication(sys.argv[:1])
    apply_style(app)
    errors: list[str] = []
    reporter = ErrorReporter(None, None, present=lambda r: errors.append(r.text))
    window = MainWindow(Backend(*real_factories(), reporter))
    window.show()

    def wait(condition: Callable[[], bool], timeout_s: float = 900.0) -> None:
        deadline = time.monotonic() + timeout_s
        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
        timer.start(20)
        loop.exec()
        timer.stop()
        if not condition():
            raise SystemExit(f"timed out; errors: {errors}")

    rows: list[Row] = []

    def measure(phase: str, start: Callable[[], None], done: Callable[[], bool],
                note: Callable[[], str]) -> None:
        meter = StallMeter(5)
        meter.start()
        began = time.perf_counter()
        start()
        wait(done)
        elapsed = time.perf_counter() - began
        meter.stop()
        rows.append(Row(phase, elapsed, len(meter.gaps_ms), meter.worst_ms,
                        meter.percentile_ms(0.99), meter.percentile_ms(0.5), note()))

    view = window.chat_view
    warmed: list[bool] = []
    window.warmed_up.connect(lambda: warmed.append(True))
    measure("start-up: open chats, build the pages, load SmolLM2", window.start,
            lambda: window.model_info is not None and view.chat is not None
            and window.pages_ready,
            lambda: f"model loaded in {window.model_info.load_s:.1f} s" if window.model_info else "")

    # What the application does once start-up is over (``bastion.desktop.heap``), timed: a full
    # collection walks every tracked object while holding the interpreter, the window included.
    wait(lambda: bool(warmed))
    library = window.library_view  # built by ``start``
    collections: list[tuple[str, int, float]] = []

    def full_collection(label: str) -> None:
        tracked = len(gc.get_objects())
        began = time.perf_counter()
        gc.collect()
        collections.append((label, tracked, (time.perf_counter() - began) * 1000))

    full_collection("before settling the heap")
    frozen = settle_heap()
    full_collection(f"after settling ({frozen:,} objects exempt)")

    # The machine's own noise: the same timer with nothing running. On a loaded machine the
    # process is sometimes not scheduled at all, which no window design can avoid.
    idle_until: list[float] = []
    measure("idle baseline (nothing running)", lambda: idle_until.append(time.monotonic() + 10),
            lambda: time.monotonic() >= idle_until[0], lambda: "noise floor of this machine")

    last_meta: dict[str, object] = {}
    view.answer_finished.connect(last_meta.update)

    def ask(question: str) -> Callable[[], None]:
        def start() -> None:
            view.input.setPlainText(question)
            view.send()
        return start

    def answer_note() -> str:
        return (f"{last_meta.get('generated_tokens', 0)} tokens, "
                f"{last_meta.get('generation_tps', 0):.1f} tokens/s")

    measure("streaming an answer (model mode)",
            ask("Write a detailed story about a lighthouse keeper and her goats."),
            lambda: not view.busy, answer_note)

    def indexed(name: str) -> bool:
        status = library.model.status_of(name)
        return library.syncing is None and status is not None and status.counts.get("indexed") == args.files

    data = Path(tempfile.mkdtemp(prefix="bastion-stall-docs-"))
    first = write_folder(data / "first", args.files)
    measure(f"indexing {args.files} files (first sync loads the embedder)",
            lambda: library.add_folder(first, "first"), lambda: indexed("first"),
            lambda: f"{args.files} files")

    second = write_folder(data / "second", args.files)
    measure(f"indexing {args.files} more files (embedder loaded)",
            lambda: library.add_folder(second, "second"), lambda: indexed("second"),
            lambda: f"{args.files} files")

    third = write_folder(data / "third", args.files)

    def both() -> None:
        library.add_folder(third, "third")
        ask("Explain how sourdough starter works, step by step.")()

    measure(f"streaming + indexing {args.files} files at once", both,
            lambda: not view.busy and indexed("third"), answer_note)

    window.close()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"GUI event-loop stalls (5 ms timer; platform {app.platformName()}; "
          f"{os.cpu_count()} CPUs; load average {load:.1f} at the end)\n")
    print("| phase | seconds | ticks | worst gap (ms) | p99 (ms) | median (ms) | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r.phase} | {r.seconds:.1f} | {r.ticks} | {r.worst_ms:.1f} | {r.p99_ms:.1f} | "
              f"{r.p50_ms:.1f} | {r.note} |")
    print("\nA full (generation 2) garbage collection in the window's process, which holds "
          "the interpreter, and so the window, while it runs:\n")
    print("| when | objects it visits | full collection (ms) |")
    print("|---|---:|---:|")
    for label, tracked, ms in collections:
        print(f"| {label} | {tracked:,} | {ms:.1f} |")
    if errors:
        print("\nerrors shown:", *errors, sep="\n- ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
