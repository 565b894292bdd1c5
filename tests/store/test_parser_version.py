"""Files skipped by older parsers are read again by newer ones (#15: every file accounted for).

A library keeps, per document, the parser version that last read it. When Bastion learns to
read more (legacy ``.xls``, text files with unknown extensions), files it skipped before are read
again at the next sync, once, though they have not changed; indexed files are left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.store.library import Library
from bastion.store.parsers.types import ParseOutcome
from bastion.store.parsers.version import PARSER_VERSION, read_again

from .fakes import CountingParser, HashingEmbedder, drain


def _versions(lib: Library) -> dict[str, tuple[str, int]]:
    return {
        Path(path).name: (state, version)
        for path, state, version in lib.db.execute(
            "SELECT path, state, parser_version FROM documents"
        ).fetchall()
    }


def test_a_file_skipped_by_older_parsers_is_read_again_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("Tides and harbour lights.")
    (docs / "ledger.xls").write_text("Quarterly ledger: harbour dues.")
    (docs / "broken.txt").write_text("Half a file.")
    parser = CountingParser()
    parser.hooks["ledger.xls"] = lambda path: ParseOutcome(
        status="skipped", reason="Legacy Office file (.xls); save it as .xlsx.")
    parser.hooks["broken.txt"] = lambda path: ParseOutcome(status="failed", reason="It is damaged.")
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool) as lib:
        lib.add_collection("docs", [docs])
        drain(lib.sync())
        assert _versions(lib) == {
            "notes.txt": ("indexed", PARSER_VERSION), "ledger.xls": ("skipped", PARSER_VERSION),
            "broken.txt": ("failed", PARSER_VERSION),
        }
        drain(lib.sync())
        assert sorted(parser.calls) == ["broken.txt", "ledger.xls", "notes.txt"], "nothing changed"

        # A library read by older parsers, and a Bastion that now reads .xls.
        lib.db.execute("UPDATE documents SET parser_version = ?", [PARSER_VERSION - 1])
        del parser.hooks["ledger.xls"]
        parser.calls.clear()
        events = drain(lib.sync())
        assert sorted(parser.calls) == ["broken.txt", "ledger.xls"], "skipped and failed files only"
        assert _versions(lib) == {
            "notes.txt": ("indexed", PARSER_VERSION - 1), "ledger.xls": ("indexed", PARSER_VERSION),
            "broken.txt": ("failed", PARSER_VERSION),
        }
        assert events[-1].files_done == 2
        assert lib.search("quarterly ledger", k=1)[0].path.endswith("ledger.xls")

        parser.calls.clear()
        drain(lib.sync())
        assert parser.calls == [], "read again once, not at every sync"


def test_a_touched_file_skipped_by_older_parsers_is_read_again_too(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ledger.xls").write_text("Quarterly ledger.")
    parser = CountingParser()
    parser.hooks["ledger.xls"] = lambda path: ParseOutcome(status="skipped", reason="Legacy Office.")
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool) as lib:
        lib.add_collection("docs", [docs])
        drain(lib.sync())
        lib.db.execute("UPDATE documents SET parser_version = ?", [PARSER_VERSION - 1])
        del parser.hooks["ledger.xls"]
        os.utime(docs / "ledger.xls", ns=(1, 1))  # same bytes, new time: "touched"
        drain(lib.sync())
        assert parser.calls == ["ledger.xls", "ledger.xls"]
        assert _versions(lib) == {"ledger.xls": ("indexed", PARSER_VERSION)}


def test_a_new_file_starts_at_version_one_until_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Lighthouse keepers.")
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), CountingParser().pool) as lib:
        lib.add_collection("docs", [docs])
        lib.db.execute("INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, "
                       "updated_at) VALUES (1, 1, 'x', x'78', 'skipped', 0)")
        assert _versions(lib)["x"] == ("skipped", 1), "rows from before versions were recorded read as 1"
        drain(lib.sync())
        assert _versions(lib)["a.txt"] == ("indexed", PARSER_VERSION)


def test_what_is_read_again_after_an_upgrade() -> None:
    old = PARSER_VERSION - 1
    assert read_again("skipped", None, old) and read_again("failed", "pdf", old)
    assert read_again("indexed", "xml", 1), "feeds were indexed as tag soup before version 2"
    assert not read_again("indexed", "pdf", 1), "an indexed kind whose parser did not change"
    assert read_again("indexed", "ppt", 6), "speaker notes were left out before version 7"
    assert not read_again("indexed", "xml", 6), "feeds have not changed since version 2"
    assert not read_again("quarantined", None, old), "a file that crashes parsers is not retried"
    assert not read_again("skipped", None, PARSER_VERSION)


def test_an_indexed_feed_from_before_is_read_again_and_replaced(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "feed.rss").write_text(
        "<rss><channel><item><description>&lt;p class=&quot;lead&quot;&gt;Harbour news"
        "&lt;/p&gt;</description></item></channel></rss>")
    (docs / "notes.txt").write_text("Tides and lights.")
    parser = CountingParser()
    with Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool) as lib:
        lib.add_collection("docs", [docs])
        drain(lib.sync())
        lib.db.execute("UPDATE documents SET parser_version = 1")
        lib.db.execute("UPDATE documents SET kind = 'xml' WHERE path LIKE '%feed.rss'")
        parser.calls.clear()
        drain(lib.sync())
        assert parser.calls == ["feed.rss"]
        assert _versions(lib)["feed.rss"] == ("indexed", PARSER_VERSION)
        assert _versions(lib)["notes.txt"] == ("indexed", 1)
