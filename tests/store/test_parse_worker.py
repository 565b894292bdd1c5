"""ParsePool: real parsing in spawned workers, and hang / crash / out-of-memory isolation.

Each test that needs a misbehaving parser injects one from ``tests.store.hostile_parsers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store.errors import StoreError
from bastion.store.parse_worker import ParsePool

from .document_factory import write_docx, write_pdf

HOSTILE = "tests.store.hostile_parsers:by_name"


@pytest.fixture(scope="module")
def hostile_pool() -> Iterator[ParsePool]:
    # Module-scoped: spawning costs about a second per worker on this machine.
    with ParsePool(workers=2, timeout_s=4, memory_mb=512, parse_function=HOSTILE) as pool:
        yield pool


def write(tmp_path: Path, name: str, text: str = "hello") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_returns_the_same_outcome_as_in_process(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "two.pdf", ["First page", "Second page"])
    with ParsePool(workers=1) as pool:
        outcome = pool.parse(pdf)
        assert outcome.status == "ok"
        assert outcome.document is not None
        assert [(page.page, page.text) for page in outcome.document.pages] == [
            (1, "First page"),
            (2, "Second page"),
        ]
        assert len(pool.startup_seconds) == 1
        assert outcome.parse_seconds is not None and outcome.parse_seconds >= 0


def test_parse_many_yields_every_path_once(tmp_path: Path) -> None:
    paths = [write(tmp_path, f"note{i}.txt", f"note number {i}") for i in range(6)]
    paths.append(write_docx(tmp_path / "report.docx"))
    paths.append(tmp_path / "missing.txt")
    with ParsePool(workers=2) as pool:
        results = dict(pool.parse_many(iter(paths)))
    assert set(results) == set(paths)
    for i in range(6):
        document = results[paths[i]].document
        assert document is not None and document.pages[0].text == f"note number {i}"
    assert results[paths[6]].status == "ok"
    assert results[tmp_path / "missing.txt"].reason == "file disappeared before it could be read"


def test_hang_times_out_and_the_pool_keeps_working(hostile_pool: ParsePool, tmp_path: Path) -> None:
    outcome = hostile_pool.parse(write(tmp_path, "hang.txt"))
    assert outcome.status == "failed"
    assert outcome.reason == "parsing took longer than 4 s (timeout)"
    after = hostile_pool.parse(write(tmp_path, "fine.txt", "still alive"))
    assert after.document is not None and after.document.pages[0].text == "still alive"


def test_crash_is_reported_and_the_pool_keeps_working(
    hostile_pool: ParsePool, tmp_path: Path
) -> None:
    outcome = hostile_pool.parse(write(tmp_path, "crash.txt"))
    assert outcome.status == "crashed"
    assert outcome.reason.startswith("the parser crashed on this file")
    assert "SIGABRT" in outcome.reason
    after = hostile_pool.parse(write(tmp_path, "fine.txt", "still alive"))
    assert after.status == "ok"


def test_memory_cap_turns_into_failed(hostile_pool: ParsePool, tmp_path: Path) -> None:
    outcome = hostile_pool.parse(write(tmp_path, "oom.txt"))
    assert outcome.status == "failed"
    assert outcome.reason == "ran out of memory (cap 512 MB)"
    assert hostile_pool.parse(write(tmp_path, "fine.txt")).status == "ok"


def test_mixed_batch_every_file_gets_a_stated_outcome(
    hostile_pool: ParsePool, tmp_path: Path
) -> None:
    names = ["a.txt", "hang.txt", "b.txt", "crash.txt", "c.txt", "oom.txt", "d.txt"]
    paths = [write(tmp_path, name, f"text of {name}") for name in names]
    results = dict(hostile_pool.parse_many(paths))
    assert {path.name: outcome.status for path, outcome in results.items()} == {
        "a.txt": "ok",
        "hang.txt": "failed",
        "b.txt": "ok",
        "crash.txt": "crashed",
        "c.txt": "ok",
        "oom.txt": "failed",
        "d.txt": "ok",
    }


def test_parser_exception_in_worker_becomes_failed(tmp_path: Path) -> None:
    with ParsePool(workers=1, parse_function="tests.store.hostile_parsers:raises") as pool:
        outcome = pool.parse(write(tmp_path, "any.txt"))
    assert outcome.status == "failed"
    assert outcome.reason == "the parser could not read this file (deliberate parser bug)"


def test_workers_do_not_import_heavy_libraries(tmp_path: Path) -> None:
    with ParsePool(workers=1, parse_function="tests.store.hostile_parsers:modules") as pool:
        outcome = pool.parse(write(tmp_path, "any.txt"))
    assert outcome.document is not None
    assert outcome.document.pages[0].text == "none"


def test_stopping_early_kills_busy_workers_and_pool_recovers(tmp_path: Path) -> None:
    paths = [write(tmp_path, "hang1.txt"), write(tmp_path, "hang2.txt"), write(tmp_path, "ok.txt")]
    with ParsePool(workers=2, timeout_s=30, parse_function=HOSTILE) as pool:
        results = pool.parse_many(paths)
        del results  # never iterated: nothing was sent
        iterator = pool.parse_many([paths[2], paths[0]])
        first_path, first = next(iterator)
        assert (first_path, first.status) == (paths[2], "ok")
        iterator.close()  # abandons the hanging file; its worker is killed
        assert pool.parse(paths[2]).status == "ok"


def test_unstartable_worker_raises_a_store_error() -> None:
    pool = ParsePool(workers=1, parse_function="tests.store.no_such_module:parse")
    with pytest.raises(StoreError, match="could not be started"):
        pool.parse(Path("/nonexistent"))
    pool.close()


def test_closed_pool_refuses_work() -> None:
    pool = ParsePool(workers=1)
    pool.close()
    pool.close()
    with pytest.raises(StoreError, match="closed"):
        pool.parse(Path("/nonexistent"))


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        ParsePool(workers=0)
    with pytest.raises(ValueError):
        ParsePool(parse_function="no-colon")


def test_a_compromised_worker_cannot_run_code_in_the_pool(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("anything")
    (tmp_path / "b.txt").write_text("the next file parses normally")
    with ParsePool(workers=1, parse_function="tests.store.hostile_parsers:compromised") as pool:
        outcome = pool.parse(tmp_path / "a.txt")
        assert outcome.status == "failed"
        assert "malformed result" in outcome.reason
        assert not (tmp_path / "pwned").exists()  # the payload was never unpickled
        assert pool.parse(tmp_path / "b.txt").status == "failed"  # a fresh worker, same trick
    assert not (tmp_path / "pwned").exists()


def test_wire_format_round_trips_and_rejects_wrong_shapes() -> None:
    import json

    from bastion.store.parsers import PageText, ParsedDocument, ParseOutcome
    from bastion.store.parsers.types import outcome_from_wire, outcome_to_wire

    outcome = ParseOutcome(
        status="ok", warnings=["kept 3 pages"], parse_seconds=0.5,
        document=ParsedDocument(pages=[PageText("caf\u00e9 \udcff", 1), PageText("b", 2, "sheet B")],
                                title="T", kind="pdf"),
    )
    assert outcome_from_wire(json.loads(json.dumps(outcome_to_wire(outcome)))) == outcome
    good = outcome_to_wire(outcome)
    for bad in (None, [], {**good, "status": "pwned"}, {**good, "reason": 3},
                {**good, "document": {"pages": "x", "kind": "text"}},
                {**good, "document": {"pages": [{"text": "a", "page": True}], "kind": "text"}},
                {**good, "warnings": [1]}, {**good, "parse_seconds": "1"}):
        with pytest.raises(ValueError):
            outcome_from_wire(bad)


def test_text_crosses_the_pipe_exactly_as_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "any.txt")
    with ParsePool(workers=1, parse_function="tests.store.hostile_parsers:surrogates") as pool:
        outcome = pool.parse(path)
    assert outcome.document is not None
    assert outcome.document.pages[0].text == "東京 \U0001f600 caf\udce9"
    assert outcome.document.title == "東京 \U0001f600 caf\udce9"
