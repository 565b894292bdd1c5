"""``bastion library add|sync --json`` and the terminal's progress bar (#15)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.cli.sync_output import JsonProgress, ProgressPrinter, bar, duration_text
from bastion.store.library_types import SyncProgress
from tests.store.fakes import CountingParser


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    for i in range(4):
        (root / f"note{i}.txt").write_text(f"Note {i} about kestrels. " * (20 * (i + 1)))
    return root


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _event(**changes: object) -> SyncProgress:
    base: dict[str, object] = dict(
        collection="notes", phase="index", files_done=1530, files_total=2423, chunks=9000,
        files_per_s=3.0, chunks_per_s=40.0, eta_s=125.0, current="/d/report.pdf",
        bytes_done=40 * 2**20, bytes_total=100 * 2**20, bytes_per_s=12.3 * 2**20,
        files_before=1210, bytes_before=0, action="parsing", action_s=14.0,
    )
    base.update(changes)
    return SyncProgress(**base)  # type: ignore[arg-type]


def test_sync_json_prints_progress_events_as_json_lines(
    fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["library", "add", "notes", str(folder), "--no-sync"]) == 0
    capsys.readouterr()
    assert main(["library", "sync", "notes", "--json"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert records[0]["type"] == "scan" and records[-1]["type"] == "done"
    progress = [r for r in records if r["type"] == "progress"]
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert progress and {r["bytes_total"] for r in progress} == {size}
    assert progress[-1]["bytes_done"] == size and progress[-1]["fraction"] == 1.0
    assert {"files_done", "files_total", "eta_s", "current", "current_label", "action",
            "files_before", "before_note", "bytes_per_s", "chunks_expected"} <= set(progress[0])
    assert records[-1]["counts"]["indexed"] == 4 and records[-1]["collection"] == "notes"
    assert "\r" not in captured.err and "[#" not in captured.err  # the bar is for terminals


def test_add_json_indexes_and_prints_json_lines(
    fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["library", "add", "notes", str(folder), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[-1]["type"] == "done" and records[-1]["files_done"] == 4


def test_a_terminal_gets_a_bar_with_bytes_speed_eta_and_the_file_at_work() -> None:
    out = FakeTerminal()
    printer = ProgressPrinter(out)
    printer.show(_event())
    text = out.getvalue()
    assert "notes: 1,210 of 3,633 files done before this sync\n" in text
    line = text.rsplit("\r", 1)[-1]
    assert line.startswith("notes: " + bar(0.4) + " 40% · 2,740/3,633 files · 12.3 MiB/s")
    assert "ETA 2 min 05 s · parsing report.pdf · 14 s" in line
    printer.show(_event(phase="done", counts={"indexed": 3633}, elapsed_s=60.0))
    assert out.getvalue().endswith("\nnotes: 1530 files, 9000 chunks in 60.0 s (40.0 chunks/s, "
                                   "12.3 MiB/s) — 3633 indexed\n")


def test_the_line_gives_the_chunks_expected_once_known() -> None:
    out = FakeTerminal()
    ProgressPrinter(out).show(_event(chunks_expected=21_480))
    line = out.getvalue().rsplit("\r", 1)[-1]
    assert "40% · 2,740/3,633 files · 9,000 of ~21,480 chunks · 12.3 MiB/s" in line


def test_a_log_gets_plain_lines_without_carriage_returns() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out)
    printer.show(_event())
    assert "\r" not in out.getvalue() and "[#" not in out.getvalue()
    assert "notes: 40% · 2,740/3,633 files" in out.getvalue()


def test_json_lines_skip_events_that_only_say_the_clock_moved() -> None:
    out = io.StringIO()
    printer = JsonProgress(out)
    for _ in range(5):
        printer.show(_event())
    printer.show(_event(files_done=1531))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["files_done"] for r in lines] == [1530, 1531]
    assert lines[0]["current_label"] == "parsing report.pdf · 14 s"


def test_durations_read_as_people_say_them() -> None:
    assert [duration_text(s) for s in (None, 42, 185, 3720)] == ["?", "42 s", "3 min 05 s", "1 h 02 min"]
