"""Fixtures shared by the desktop tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.desktop import library as use_case
from bastion.desktop.cli import main
from tests.desktop.fakes import FakeEngine
from tests.desktop.service_harness import REPLY, Service
from tests.store.fakes import CountingParser, HashingEmbedder


@pytest.fixture
def fake_parts(monkeypatch: pytest.MonkeyPatch) -> CountingParser:
    """The library's use cases with an in-process parser and a hashing embedder (fast, no model);
    the parser counts what it parsed."""
    parser = CountingParser()
    embedder = HashingEmbedder()
    monkeypatch.setattr(use_case, "default_embedder", lambda folder: embedder)
    monkeypatch.setattr(use_case, "default_parse_pool", parser.pool)
    return parser


# -- the resident service over a two-file "notes" collection (tests/desktop/test_service_*.py) --

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two small notes (files that define their own ``folder`` use theirs)."""
    root = tmp_path / "notes"
    root.mkdir()
    (root / "boats.txt").write_text("# Boats\n\nCatamarans have two hulls and sail fast.\n")
    (root / "soup.txt").write_text("# Soup\n\nMinestrone is an Italian vegetable soup.\n")
    return root


@pytest.fixture
def library(fake_parts: CountingParser, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["library", "add", "notes", str(folder)]) == 0
    capsys.readouterr()


@pytest.fixture
def service(library: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    running = Service(FakeEngine(REPLY))
    monkeypatch.setenv("BASTION_SERVICE", "on")
    yield running
    running.stop()
