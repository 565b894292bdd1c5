"""Chunking: never over the embedder's limit (special tokens included), overlap, boundaries."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bastion.store.chunking import CHUNKER_VERSION, chunk_pages, find_headings
from bastion.store.parsers.types import PageText

from .fakes import FakeTokenizer

MAX = 64


def _chunks(text: str, max_tokens: int = MAX, page: int | None = None):
    return chunk_pages([PageText(text, page)], FakeTokenizer(), max_tokens)


def _assert_fit_and_offsets(chunks, pages: dict[int | None, str], max_tokens: int) -> None:
    tok = FakeTokenizer()
    for chunk in chunks:
        assert tok.count([chunk.text])[0] <= max_tokens
        assert chunk.tokens <= max_tokens
        assert pages[chunk.page][chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text.strip()


def test_chunker_version_is_a_nonempty_identity() -> None:
    assert isinstance(CHUNKER_VERSION, str) and CHUNKER_VERSION


def test_short_text_is_one_chunk_with_offsets() -> None:
    text = "  Hello world. This is short.  "
    chunks = _chunks(text)
    assert len(chunks) == 1
    assert chunks[0].text == "Hello world. This is short."
    assert text[chunks[0].char_start : chunks[0].char_end] == chunks[0].text


def test_empty_and_blank_pages_give_no_chunks() -> None:
    assert chunk_pages([PageText("", 1), PageText("   \n\n ", 2)], FakeTokenizer(), MAX) == []


def test_pathological_5000_character_word_is_split_not_truncated() -> None:
    word = "x" * 5000
    chunks = _chunks(f"before {word} after")
    _assert_fit_and_offsets(chunks, {None: f"before {word} after"}, MAX)
    # Every character of the word is in some chunk: nothing silently dropped.
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert set(range(len(f"before {word} after"))) - covered <= {6, 5007}  # only the spaces


def test_cjk_text_without_spaces_fits() -> None:
    text = "東京は日本の首都です。" * 200 + "人工知能の研究が進んでいる" * 100
    chunks = _chunks(text)
    assert len(chunks) > 5
    _assert_fit_and_offsets(chunks, {None: text}, MAX)
    # Prefers ending at a CJK full stop when one is in reach.
    assert sum(c.text.endswith("。") for c in chunks) >= len(chunks) // 2


def test_consecutive_chunks_overlap() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    chunks = _chunks(text)
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        assert b.char_start < a.char_end, "consecutive chunks share some text"
        assert b.char_start > a.char_start, "and always move forward"
    _assert_fit_and_offsets(chunks, {None: text}, MAX)


def test_chunks_end_at_sentence_boundaries_when_possible() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    chunks = _chunks(text)
    assert all(c.text.endswith(".") for c in chunks)


def test_headings_start_new_chunks_and_are_recorded() -> None:
    text = (
        "# Intro\n\n" + "Intro words here. " * 5 + "\n\n## Methods\n\n" + "We measured things. " * 40
        + "\n\n## Results\n\n" + "It worked well. " * 5
    )
    chunks = _chunks(text)
    headings = [c.heading for c in chunks]
    assert headings[0] == "Intro"
    assert "Methods" in headings and headings[-1] == "Results"
    results = [c for c in chunks if c.heading == "Results"]
    assert results[0].text.startswith("## Results")
    # No overlap across a heading: the Results chunk carries no Methods text.
    assert "measured" not in results[0].text


def test_setext_headings_are_found() -> None:
    assert find_headings("Title\n=====\n\ntext\n\nSub\n---\n") == [(0, "Title"), (19, "Sub")]


def test_pages_keep_their_numbers_and_heading_carries_over() -> None:
    pages = [PageText("# Chapter One\n\n" + "alpha beta. " * 60, 1), PageText("gamma delta. " * 10, 2)]
    chunks = chunk_pages(pages, FakeTokenizer(), MAX)
    assert {c.page for c in chunks} == {1, 2}
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    page2 = [c for c in chunks if c.page == 2]
    assert page2[0].heading == "Chapter One"
    _assert_fit_and_offsets(chunks, {1: pages[0].text, 2: pages[1].text}, MAX)


class _MidWordTokenizer(FakeTokenizer):
    """Counts more tokens for text that starts mid-word, as WordPiece can."""

    def count(self, texts):  # type: ignore[no-untyped-def]
        return [n + (5 if t[:1].islower() else 0) for n, t in zip(super().count(texts), texts, strict=True)]


def test_rechecks_counts_and_splits_what_retokenises_longer() -> None:
    text = "word" * 3000
    chunks = chunk_pages([PageText(text)], _MidWordTokenizer(), MAX)
    tok = _MidWordTokenizer()
    assert all(n <= MAX for n in tok.count([c.text for c in chunks]))
    covered = set()
    for c in chunks:
        covered.update(range(c.char_start, c.char_end))
    assert covered == set(range(len(text)))  # split, never truncated


@pytest.mark.slow
def test_real_minilm_tokenizer_limits(minilm_path: Path) -> None:
    from bastion.store.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(minilm_path)
    tok = embedder.tokenizer()
    assert embedder.max_tokens == 256 and tok.special_tokens == 2
    long_word = "".join(chr(ord("a") + (i * 7) % 26) + str(i % 10) for i in range(2500))
    texts = [
        f"intro {long_word} outro",
        "東京は日本の首都です。人工知能の研究が進んでいる。" * 300,
        "Ünïcödé façade naïve café. " * 400,
    ]
    for text in texts:
        chunks = chunk_pages([PageText(text, 3)], tok, embedder.max_tokens)
        assert chunks
        counts = tok.count([c.text for c in chunks])
        assert max(counts) <= embedder.max_tokens
        assert all(text[c.char_start : c.char_end] == c.text for c in chunks)
    # Packed close to the limit: chunks are not needlessly small.
    cjk = chunk_pages([PageText(texts[1])], tok, 256)
    assert max(tok.count([c.text for c in cjk])) >= 200


def _long_document(paragraphs: int) -> str:
    parts = []
    for i in range(paragraphs):
        if i % 37 == 0:
            parts.append(f"# Section {i}\n\n")
        if i % 53 == 0:
            parts.append(f"Part {i}\n{'=' * 8}\n\n")
        words = " ".join(f"w{(i * 7 + j) % 101}" for j in range(20 + i % 30))
        parts.append(f"Paragraph {i} says {words}. Then it ends!\n\n")
    return "".join(parts)


@pytest.mark.parametrize("window", [997, 3_001])
def test_long_pages_are_chunked_window_by_window_with_the_same_result(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Huge pages are tokenised a window at a time (bounded memory); the chunks must be the ones
    # the whole page at once gives, headings across window edges included.
    import bastion.store.chunking as chunking

    text = _long_document(400)
    assert len(text) > 10 * window
    whole = _chunks(text)
    monkeypatch.setattr(chunking, "_WINDOW_CHARS", window)
    windowed = _chunks(text)
    assert windowed == whole
    assert {c.heading for c in windowed} >= {"Section 0", "Section 370", "Part 371"}
    _assert_fit_and_offsets(windowed, {None: text}, MAX)


def test_heading_carries_over_to_the_next_page_from_a_long_page(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.store.chunking as chunking

    monkeypatch.setattr(chunking, "_WINDOW_CHARS", 500)
    first = _long_document(60) + "# Last heading\n\nshort tail.\n"
    chunks = chunk_pages([PageText(first, 1), PageText("next page text", 2)], FakeTokenizer(), MAX)
    assert chunks[-1].page == 2 and chunks[-1].heading == "Last heading"


def test_a_single_huge_line_is_chunked_window_by_window_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bastion.store.chunking as chunking

    text = " ".join(f"token{i % 997}. and more" for i in range(6_000))  # no line break at all
    whole = _chunks(text)
    monkeypatch.setattr(chunking, "_WINDOW_CHARS", 1_000)
    assert _chunks(text) == whole


def test_chunk_document_stops_at_max_chunks_and_says_so() -> None:
    from bastion.store.chunking import chunk_document

    text = _long_document(200)
    everything = _chunks(text)
    assert len(everything) > 30
    capped, cut = chunk_document([PageText(text, None)], FakeTokenizer(), MAX, max_chunks=30)
    assert cut and capped == everything[:30]
    whole, cut = chunk_document([PageText(text, None)], FakeTokenizer(), MAX, len(everything))
    assert not cut and whole == everything
