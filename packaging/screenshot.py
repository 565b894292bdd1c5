"""Take the README's screenshot of the real window showing a cited answer.

Starts Xvfb (unless a display is already set), opens Bastion's window on a temporary data folder
with the embedded SmolLM2 and the real library, indexes a small sample folder, asks a question
in documents mode, and saves the window to ``packaging/screenshot.png``.

    apt-get install -y xvfb          # once; only this script needs it, not CI
    .venv/bin/python packaging/screenshot.py [--out packaging/screenshot.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

SAMPLE = {
    "travel-policy.md": (
        "# Travel policy\n\n"
        "## Approval\n\nInternational trips must be approved by your department head at least "
        "**21 days** before departure. Domestic trips need approval 7 days ahead.\n\n"
        "## Expenses\n\nKeep every receipt. Meals are reimbursed up to 45 euros a day; hotel "
        "rooms up to 160 euros a night in capital cities.\n"
    ),
    "security-handbook.txt": (
        "Security handbook\n\nLaptops must use full-disk encryption. Report a lost device to "
        "the service desk within one hour. Visitors are escorted at all times and sign the "
        "register at the front desk.\n"
    ),
    "onboarding.md": (
        "# Onboarding\n\nNew staff receive their badge on the first day and complete the "
        "privacy course within two weeks. Your buddy shows you the archive room.\n"
    ),
}
QUESTION = "How far in advance must an international trip be approved?"


def start_xvfb(size: str = "1400x900x24") -> subprocess.Popen[bytes] | None:
    """Start Xvfb on a free display and point DISPLAY at it (None if a display is set)."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise SystemExit("Xvfb is not installed: apt-get install -y xvfb (only this script "
                         "needs it).")
    for number in range(99, 120):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    else:
        raise SystemExit("no free X display number between :99 and :119")
    # -nolisten tcp: a local Unix socket only, like everything else Bastion opens.
    process = subprocess.Popen([xvfb, f":{number}", "-screen", "0", size, "-nolisten", "tcp"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("Xvfb did not start")
        time.sleep(0.1)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description="Take the README screenshot of the window.")
    parser.add_argument("--out", type=Path, default=HERE / "screenshot.png")
    parser.add_argument("--size", default="1200x780", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--other-tabs", type=Path, metavar="DIR",
                        help="also save the library, models and settings pages here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    home = Path(tempfile.mkdtemp(prefix="bastion-shot-"))
    docs = Path(tempfile.mkdtemp(prefix="bastion-shot-docs-")) / "Handbook"
    docs.mkdir()
    for name, text in SAMPLE.items():
        (docs / name).write_text(text, encoding="utf-8")
    os.environ["BASTION_HOME"] = str(home)
    (home / "settings.json").write_text(json.dumps({"temperature": 0.0, "max_tokens": 160}))
    xvfb = start_xvfb()
    from bastion.desktop.system_libs import check_libraries

    libraries = check_libraries()
    if libraries.missing:  # Qt would abort, leaving Xvfb behind
        if xvfb is not None:
            xvfb.terminate()
        raise SystemExit(f"screenshot: {libraries.message()}")
    try:
        return shoot(args.out, width, height, docs, args.other_tabs)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(docs.parent, ignore_errors=True)


def shoot(out: Path, width: int, height: int, docs: Path, other_tabs: Path | None) -> int:
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

    def wait(condition: Callable[[], bool], timeout_s: float = 900.0) -> None:
        deadline = time.monotonic() + timeout_s
        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: (condition() or errors or time.monotonic() > deadline)
                              and loop.quit())
        timer.start(50)
        loop.exec()
        timer.stop()
        if errors or not condition():
            raise SystemExit(f"screenshot failed: {errors or 'timed out'}")

    window.start()
    view = window.chat_view
    wait(lambda: window.model_info is not None and view.chat is not None and window.pages_ready)
    library = window.library_view
    library.add_folder(docs, "Handbook")
    wait(lambda: library.syncing is None and (s := library.model.status_of("Handbook")) is not None
         and s.counts.get("indexed") == len(SAMPLE))
    wait(lambda: "Handbook" in view.collection_names)
    view.set_mode("docs")
    wait(lambda: view.chat.mode == "docs")
    view.set_collections(["Handbook"])
    wait(lambda: view.chat.collections == ["Handbook"])
    view.input.setPlainText(QUESTION)
    view.send()
    wait(lambda: not view.busy)
    window.tabs.setCurrentWidget(view)
    settle(app)
    view.message_list.scroll_to_bottom()
    app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    if other_tabs is not None:
        other_tabs.mkdir(parents=True, exist_ok=True)
        for name in ("library", "models", "settings"):
            window.tabs.setCurrentWidget(window.pages[name])
            if name == "models":
                wait(lambda: window.models_view.busy_with is None)
            settle(app)
            window.grab().save(str(other_tabs / f"{name}.png"))
    answer = view.messages.item(view.messages.rowCount() - 1)
    print(f"wrote {out}\nanswer: {answer.text!r}\nsources: "
          f"{[Path(s.path).name for s in answer.sources]}")
    window.close()
    return 0


def settle(app: object, seconds: float = 0.5) -> None:
    """Let layouts and deferred renders finish before grabbing."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


if __name__ == "__main__":
    raise SystemExit(main())
