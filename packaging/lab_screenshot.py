"""Take the screenshot of the window's Lab page showing a finished run's report.

Copies a run folder made by ``bastion lab run`` into a temporary data folder (the original is
not touched), opens Bastion's window there under Xvfb (see ``screenshot.py``), shows the run's
report on the Lab page, and saves the window; with ``--answers-out`` also the answers side by
side for the first question where the arms disagree.

    .venv/bin/python packaging/lab_screenshot.py --run squad-lab-run [--out packaging/lab-screenshot.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from screenshot import settle, start_xvfb  # noqa: E402 - a sibling script, not a package


def main() -> int:
    parser = argparse.ArgumentParser(description="Take the screenshot of the Lab page.")
    parser.add_argument("--run", type=Path, required=True, metavar="DIR",
                        help="a run folder made by bastion lab run")
    parser.add_argument("--out", type=Path, default=HERE / "lab-screenshot.png")
    parser.add_argument("--answers-out", type=Path, metavar="PNG",
                        help="also save the answers side by side here")
    parser.add_argument("--size", default="1280x820", help="window size, WIDTHxHEIGHT")
    args = parser.parse_args()
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"{args.run} is not a lab run folder (it has no run.json).")
    width, height = (int(v) for v in args.size.split("x"))

    home = Path(tempfile.mkdtemp(prefix="bastion-lab-shot-"))
    shutil.copytree(args.run, home / "lab" / args.run.resolve().name)
    os.environ["BASTION_HOME"] = str(home)
    xvfb = start_xvfb()
    try:
        return shoot(args.out, args.answers_out, width, height)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def shoot(out: Path, answers_out: Path | None, width: int, height: int) -> int:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    import bastion.desktop  # noqa: F401 - offline environment before any ML import
    from bastion.desktop.gui.application import real_factories
    from bastion.desktop.gui.backend import Backend
    from bastion.desktop.gui.error_dialogs import ErrorReporter
    from bastion.desktop.gui.main_window import MainWindow
    from bastion.desktop.gui.style import apply_style

    app = QApplication(sys.argv[:1])
    apply_style(app)
    errors: list[str] = []
    reporter = ErrorReporter(None, None, present=lambda r: errors.append(r.text))
    window = MainWindow(Backend(*real_factories(), reporter))
    window.resize(width, height)
    window.show()

    def wait(condition: Callable[[], bool], timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        loop = QEventLoop()
        timer = QTimer()

        def check() -> None:
            if condition() or errors or time.monotonic() > deadline:
                loop.quit()

        timer.timeout.connect(check)
        timer.start(50)
        loop.exec()
        timer.stop()
        if errors or not condition():
            raise SystemExit(f"lab screenshot failed: {errors or 'timed out'}")

    window.start()
    wait(lambda: window.pages_ready)
    lab = window.lab_view
    wait(lambda: window.model_info is not None and lab.report is not None)
    window.tabs.setCurrentWidget(lab)
    settle(app)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    print(f"wrote {out}: {lab.report.folder.name}, {lab.report.summary.answered} answers")
    if answers_out is not None:
        lab.tabs.setCurrentWidget(lab.answers_panel)
        lab.answers_panel.set_filter("disagree")
        settle(app)
        window.grab().save(str(answers_out))
        print(f"wrote {answers_out}")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
