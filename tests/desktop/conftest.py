"""Fixtures shared by the desktop tests."""

from __future__ import annotations

import pytest

from bastion.desktop import library as use_case
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
