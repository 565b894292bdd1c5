"""Past runs as the window lists and shows them: the listing, the per-question rows and their
filters, the folder a run from the window goes to, and reading a run that is being written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bastion.desktop.lab.run_folder import RunFolder, pick_run_folder
from bastion.desktop.lab.runner import LabPlan, duration, run_lab
from bastion.desktop.lab.runs import list_runs, load_report, read_listing
from tests.desktop.test_lab_run import ARMS, ReadingEngine, parts, start


def finished_run(tmp_path: Path) -> RunFolder:
    tmp_path.mkdir(exist_ok=True)
    folder, qset, sampling = start(tmp_path, ARMS)
    list(run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(ReadingEngine(), sampling), folder))
    return folder


def test_a_finished_run_is_listed_with_its_progress_and_read_as_rows(tmp_path: Path) -> None:
    folder = finished_run(tmp_path)
    [listing] = list_runs(tmp_path)
    assert listing.path == folder.path.resolve() and listing.finished
    assert (listing.answered, listing.expected) == (20, 20)
    assert listing.progress() == "20/20 answers, 4 arms"
    assert listing.title().startswith("capitals · atlas")

    report = load_report(folder.path)
    assert [row.question.id for row in report.rows] == ["france", "italy", "spain", "peru", "moon"]
    france = report.rows[0]
    # model arms guess Berlin, documents arms read the capital: the arms disagree.
    assert [a.scores.correct for a in france.answers if a] == [False, True, False, True]
    assert france.disagree and not france.wrong_everywhere
    assert [r.question.id for r in report.questions("disagree")] == [
        "france", "italy", "spain", "peru", "moon"]
    # The Moon: nothing found in docs mode (declined, right), a guess without documents (wrong).
    assert [r.question.id for r in report.questions("wrong")] == []
    assert report.summary.answered == 20 and report.html == folder.path / "report.html"


def test_rows_keep_arm_order_with_gaps_for_answers_not_made_yet(tmp_path: Path) -> None:
    folder, qset, sampling = start(tmp_path, ARMS)
    engine = ReadingEngine()
    events = run_lab(LabPlan(qset.questions, ARMS, "atlas"), parts(engine, sampling), folder)
    for _ in range(1 + 6):  # started, then six answers: france by all four arms, italy by two
        next(events)
    events.close()
    report = load_report(folder.path)
    assert [len(r.answered) for r in report.rows] == [4, 2]
    assert report.rows[1].answers[2] is None and report.rows[1].answers[3] is None
    assert read_listing(folder.path).progress() == "6/20 answers, 4 arms (not finished)"


def test_reading_a_run_never_cuts_the_line_being_written(tmp_path: Path) -> None:
    folder = finished_run(tmp_path)
    with folder.answers_file.open("a", encoding="utf-8") as out:
        out.write('{"question_id": "peru", "arm": "do')  # another thread is writing this line
    size = folder.answers_file.stat().st_size
    assert read_listing(folder.path).answered == 20
    assert load_report(folder.path).summary.answered == 20
    assert folder.answers_file.stat().st_size == size
    assert len(folder.answers()) == 20  # the run that continues repairs it
    assert folder.answers_file.stat().st_size < size


def test_damaged_runs_are_listed_with_their_error_and_newest_come_first(tmp_path: Path) -> None:
    older = finished_run(tmp_path / "a")
    newer = finished_run(tmp_path / "b")
    raw = json.loads(newer.run_file.read_text(encoding="utf-8"))
    raw["created"] += 60
    newer.run_file.write_text(json.dumps(raw), encoding="utf-8")
    damaged = tmp_path / "runs" / "broken"
    damaged.mkdir(parents=True)
    (damaged / "run.json").write_text("{not json", encoding="utf-8")
    listings = list_runs(tmp_path / "runs", extra=[older.path, newer.path])
    assert [r.path for r in listings][:2] == [newer.path.resolve(), older.path.resolve()]
    broken = listings[-1]
    assert broken.path == damaged.resolve() and "is damaged" in (broken.error or "")
    assert broken.progress() == "cannot be read" and not broken.finished
    assert list_runs(tmp_path / "nowhere") == []


def test_the_window_continues_the_same_experiment_and_keeps_others_apart(tmp_path: Path) -> None:
    folder = finished_run(tmp_path)
    info = folder.info()
    runs = folder.path.parent
    assert pick_run_folder(runs, "run", info).path == folder.path  # same settings: continue
    other = dataclasses.replace(info, arms=ARMS[:2])
    second = pick_run_folder(runs, "run", other)
    assert second.path == runs / "run-2" and not second.exists()
    assert folder.differences(other) == ["arms"]


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (None, 45, 185, 7620)] == ["?", "45 s", "3 min 05 s", "2 h 07 min"]
