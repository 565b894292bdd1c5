"""Start-up and shutdown: the ``gui`` command without a display, one instance per user, errors
shown the one way, and closing during an answer or an indexing run losing nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bastion.desktop.cli import build_parser
from bastion.desktop.cli.gui_cmd import display_available, run_gui
from bastion.desktop.errors import BastionError
from bastion.desktop.gui.application import SingleInstance, instance_key
from bastion.desktop.gui.error_dialogs import ErrorReporter, setup_logging
from bastion.desktop.gui.main_window import MainWindow
from bastion.models.errors import ModelLoadFailed
from bastion.store.chats import ChatStore
from bastion.store.library import Library
from tests.gui.fakes import StreamingEngine
from tests.store.fakes import HashingEmbedder, text_pool

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def test_without_a_display_the_gui_command_explains_the_cli(monkeypatch, capsys) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert run_gui(argparse.Namespace(no_model=True)) == 1
    err = capsys.readouterr().err
    assert "no display" in err and "bastion chat" in err and "bastion ask" in err


def test_display_detection() -> None:
    assert display_available({"DISPLAY": ":0"}, "linux")
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert display_available({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not display_available({}, "linux")
    assert display_available({}, "win32") and display_available({}, "darwin")


def test_bastion_without_arguments_runs_the_gui_command() -> None:
    args = build_parser().parse_args(["gui"])
    assert args.func is run_gui


def test_a_second_launch_brings_the_first_forward(qtbot, bastion_home: Path) -> None:
    key = instance_key(bastion_home)
    first = SingleInstance(key)
    assert first.listen()
    second = SingleInstance(key)
    with qtbot.waitSignal(first.activated, timeout=5000):
        assert second.notify_running()
    first.close()
    assert not SingleInstance(key).notify_running()  # nobody is listening any more


def test_known_errors_say_what_to_do_and_bugs_point_to_the_log(qtbot, bastion_home: Path) -> None:
    log_path = setup_logging(bastion_home / "logs")
    shown = []
    reporter = ErrorReporter(None, log_path, present=shown.append)
    known = reporter.report(ModelLoadFailed("llama.cpp refused x.gguf. Choose another model."),
                            "load the model")
    assert known.known and known.text == "llama.cpp refused x.gguf. Choose another model."
    assert known.title == "Could not load the model"
    try:
        raise KeyError("internal detail")
    except KeyError as error:
        bug = reporter.report(error, "open the chat")
    assert not bug.known and str(log_path) in bug.text
    assert "Traceback" not in bug.text and "KeyError" not in bug.text
    assert shown == [known, bug]
    logged = log_path.read_text(encoding="utf-8")
    assert "Traceback" in logged and "KeyError: 'internal detail'" in logged
    assert (log_path.stat().st_mode & 0o777) == 0o600


def test_a_failing_job_reaches_the_reporter(qtbot, window: MainWindow, reporter) -> None:
    def broken(session, job):
        raise BastionError("The chat history is locked. Close the other Bastion window.")

    window.backend.run(window.backend.core, broken, "open the chat")
    qtbot.waitUntil(lambda: bool(reporter.shown))
    assert reporter.shown[-1].text.startswith("The chat history is locked")


def test_closing_during_an_answer_stores_it_as_interrupted(qtbot, window: MainWindow,
                                                           engine: StreamingEngine,
                                                           bastion_home: Path) -> None:
    engine.reply = " ".join(f"w{i}" for i in range(2000))
    engine.delay_s = 0.01
    view = window.chat_view
    view.input.setPlainText("A long one")
    view.send()
    qtbot.waitUntil(lambda: "w5" in view.messages.item(1).text, timeout=5000)
    chat_id = view.chat.id
    window.close()
    assert window.closed_cleanly is True
    assert not window.backend.core.isRunning() and not window.backend.library.isRunning()
    store = ChatStore(bastion_home / "bastion.db")
    messages = store.messages(chat_id)
    store.close()
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "interrupted" and messages[1].content.startswith("w0 w1")


def test_closing_during_indexing_keeps_what_was_indexed(qtbot, window: MainWindow,
                                                        tmp_path: Path, bastion_home: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"note{i:03}.txt").write_text(f"Note {i} is about topic {i % 7}.\n" * 20)
    library = window.library_view
    library.add_folder(folder, "many")
    qtbot.waitUntil(lambda: (p := library.model.progress_of("many")) is not None
                    and p.phase == "index" and p.files_done >= 1, timeout=20000)
    window.close()
    assert window.closed_cleanly is True
    reopened = Library(bastion_home / "library.db", lambda _f: HashingEmbedder(), text_pool)
    try:
        status = reopened.status("many")[0]
        assert status.counts["indexed"] >= 1
        assert status.counts["in_progress"] == 0  # nothing left claimed
        assert sum(status.counts.values()) == 300
        assert reopened.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        reopened.close()

