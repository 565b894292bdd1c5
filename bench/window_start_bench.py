"""How long from starting `bastion gui` to the window on screen?

Starts the real command (``python -m bastion.desktop gui``, as the ``bastion`` script does) in a
fresh process on a throw-away data folder, offscreen unless a display is set (run it under
``xvfb-run -a`` to include a real X server). A small hook in the child reports, as wall-clock
times since the process was spawned:

- *window shown*: the main window's first show event has been handled and the event loop has
  turned once (it is laid out and painted);
- *model ready*: the default model (SmolLM2) has loaded in the engine process, in the background;
- the child's CPU seconds (user + system, all its threads) and RSS at each moment.

Each start is made twice, alternately: as the window starts now (the pages other than the chat
are built after the show) and with every page built before the show (as before), so the ratio
comes from one machine state. On a shared machine the wall-clock figures stretch with the load;
the CPU seconds are close to what an idle machine's wall clock would show.

Prints a Markdown table (median, min and max of ``--runs`` starts). The target is a window shown
within 2 s of start; everything slow (model, embedder, torch) must come after it.

    .venv/bin/python bench/window_start_bench.py [--runs 5] [--no-model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs inside the child before the command: times the first show of the main window and the
# first model load, then closes the window the normal way.
CHILD = r"""
import os, sys, time
T0 = float(os.environ["BENCH_T0"])

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def say(what):
    print(f"BENCH {what} {time.time() - T0:.3f} {time.process_time():.3f} {rss_mb():.0f}",
          flush=True)

say("interpreter")
from bastion.desktop.gui import main_window

shown = []
original_show = main_window.MainWindow.showEvent

def show_event(self, event):
    original_show(self, event)
    if not shown:
        shown.append(self)
        from PySide6.QtCore import QTimer
        QTimer.singleShot(0, lambda: say("shown"))
        no_model = "--no-model" in sys.argv
        def loaded(info):
            say("model")
            QTimer.singleShot(0, self.close)
        self.model_loaded.connect(loaded)
        if no_model:
            QTimer.singleShot(500, self.close)
        QTimer.singleShot(120_000, self.close)  # never hang the bench

main_window.MainWindow.showEvent = show_event
if os.environ.get("BENCH_EAGER_PAGES"):
    # As before the pages were deferred: every page built (and imported) before the show.
    original_init = main_window.MainWindow.__init__
    def eager_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._add_pages()
    main_window.MainWindow.__init__ = eager_init
from bastion.desktop.cli import main
sys.exit(main(sys.argv[1:]))
"""


Mark = tuple[float, float, float]  # wall seconds since spawn, CPU seconds of the child, RSS MB


def one_start(python: str, home: Path, no_model: bool, eager: bool,
              tree: Path | None = None) -> dict[str, Mark]:
    env = dict(os.environ, BASTION_HOME=str(home))
    if eager:
        env["BENCH_EAGER_PAGES"] = "1"
    if tree is not None:  # an older checkout's bastion package, found before the installed one
        env["PYTHONPATH"] = str(tree)
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env["QT_QPA_PLATFORM"] = "offscreen"
        env["WAYLAND_DISPLAY"] = "bench-offscreen"  # the CLI asks for a display before Qt
    argv = [python, "-c", CHILD, "gui"] + (["--no-model"] if no_model else [])
    env["BENCH_T0"] = repr(time.time())
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    marks: dict[str, Mark] = {}
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            _, what, seconds, cpu, rss = line.split()
            marks.setdefault(what, (float(seconds), float(cpu), float(rss)))
    if "shown" not in marks:
        sys.exit(f"the window never showed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-model", action="store_true", help="start with `gui --no-model`")
    parser.add_argument("--before-tree", type=Path, help=(
        "compare with an older version instead of building every page before the show: a "
        "folder holding bastion/{desktop,models,store} of that version (e.g. links into "
        "`git archive COMMIT desktop models store` unpacked)"))
    args = parser.parse_args()
    python = sys.executable
    before = f"before ({args.before_tree})" if args.before_tree else "all pages before the show"
    modes = ("pages after the show", before)
    rows: dict[tuple[str, str], list[Mark]] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-start-") as tmp:
        for run in range(args.runs + 1):  # the first start warms the OS file cache: not counted
            for mode in modes:  # alternated, so both see the same machine load
                second = mode == modes[1]
                marks = one_start(python, Path(tmp) / f"home{run}{mode[0]}", args.no_model,
                                  eager=second and not args.before_tree,
                                  tree=args.before_tree if second else None)
                if run:
                    for what, value in marks.items():
                        rows.setdefault((mode, what), []).append(value)
    labels = {"interpreter": "Python started, bastion imports begin",
              "shown": "window shown (first show event + one loop turn)",
              "model": "default model loaded (background)"}
    platform = "X11 (" + os.environ["DISPLAY"] + ")" if os.environ.get("DISPLAY") else "offscreen"
    print(f"\nWindow start, {args.runs} starts, {platform}, seconds since the process was spawned"
          f"{' (gui --no-model)' if args.no_model else ''}\n")
    print("| build | moment | median s | min s | max s | CPU s (median) | RSS MB (median) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode in modes:
        for what in ("interpreter", "shown", "model"):
            values = rows.get((mode, what))
            if not values:
                continue
            seconds = [v[0] for v in values]
            print(f"| {mode} | {labels[what]} | {statistics.median(seconds):.2f} | "
                  f"{min(seconds):.2f} | {max(seconds):.2f} | "
                  f"{statistics.median(v[1] for v in values):.2f} | "
                  f"{statistics.median(v[2] for v in values):.0f} |")
    shown = [statistics.median(v[0] for v in rows[(mode, "shown")]) for mode in modes]
    print(f"\nwindow shown: {shown[0]:.2f} s vs {shown[1]:.2f} s "
          f"({shown[0] / shown[1]:.2f}x); CPU seconds are what an idle machine would take")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
