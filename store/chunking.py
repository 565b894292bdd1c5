"""Token-aware chunking with the embedder's own tokenizer.

A chunk never holds more tokens than the embedder reads (special tokens included), so nothing is
silently truncated at embedding time. Chunks prefer to end at headings, then paragraphs, then
sentences or lines, then spaces; only a pathological run with no boundary is cut between tokens.
Consecutive chunks overlap by a few sentences' worth of tokens, except across a heading. Every
chunk keeps its page, its character offsets into that page's text and the nearest heading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .embedder import ChunkTokenizer
from .parsers.types import PageText

# Part of every collection's index identity: change it whenever chunk boundaries change.
CHUNKER_VERSION = "tok-1"

DEFAULT_OVERLAP_TOKENS = 32

# Break scores: higher is a better place to end a chunk.
_HEADING, _PARAGRAPH, _SENTENCE, _SPACE, _NONE = 4, 3, 2, 1, 0
_SENTENCE_END = frozenset(".!?;:。！？；…")
_CJK_SENTENCE_END = frozenset("。！？；")

_ATX = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SETEXT = re.compile(r"^([^\n]{1,200})\n[ \t]{0,3}(=+|-+)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedder.

    ``char_start``/``char_end`` index into the text of page ``page`` (``text`` is that slice).
    """

    ordinal: int
    text: str
    page: int | None
    char_start: int
    char_end: int
    heading: str | None
    tokens: int


def find_headings(text: str) -> list[tuple[int, str]]:
    """Markdown-style headings (ATX ``#`` and setext underlines) as (offset, title), sorted."""
    found = [(m.start(), m.group(2).strip()) for m in _ATX.finditer(text)]
    found += [(m.start(), m.group(1).strip()) for m in _SETEXT.finditer(text) if m.group(1).strip()]
    return sorted(found)


def chunk_pages(
    pages: Sequence[PageText],
    tokenizer: ChunkTokenizer,
    max_tokens: int,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Cut a document's pages into chunks that fit the embedder.

    Args:
        pages: The document's text, page by page.
        tokenizer: The embedder's tokenizer (for this thread).
        max_tokens: The embedder's maximum sequence length, special tokens included.
        overlap_tokens: About how many tokens consecutive chunks share.

    Returns:
        Chunks in document order, ordinals from 0.
    """
    budget = max_tokens - tokenizer.special_tokens
    if budget < 1:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text")
    overlap = max(0, min(overlap_tokens, budget // 4))
    chunks: list[Chunk] = []
    heading: str | None = None
    for page in pages:
        page_chunks, heading = _chunk_page(page, tokenizer, budget, overlap, heading)
        chunks.extend(page_chunks)
    chunks = _enforce_limit(chunks, pages, tokenizer, max_tokens)
    return [
        Chunk(i, c.text, c.page, c.char_start, c.char_end, c.heading, c.tokens)
        for i, c in enumerate(chunks)
    ]


def _chunk_page(
    page: PageText,
    tokenizer: ChunkTokenizer,
    budget: int,
    overlap: int,
    heading: str | None,
) -> tuple[list[Chunk], str | None]:
    text = page.text
    spans = tokenizer.offsets(text)
    headings = find_headings(text)
    if not spans:
        return [], headings[-1][1] if headings else heading
    scores = _break_scores(text, spans, {pos for pos, _ in headings})
    ranges = _greedy_ranges(scores, len(spans), budget, overlap)
    chunks = []
    for s, e in ranges:
        start, end = spans[s][0], spans[e - 1][1]
        chunks.append(
            Chunk(0, text[start:end], page.page, start, end, _heading_at(headings, start, heading), e - s)
        )
    return chunks, headings[-1][1] if headings else heading


def _break_scores(text: str, spans: list[tuple[int, int]], heading_starts: set[int]) -> list[int]:
    """Score of breaking before token i (index 0 unused). Linear in the text length."""
    scores = [_NONE] * len(spans)
    for i in range(1, len(spans)):
        prev_end, start = spans[i - 1][1], spans[i][0]
        gap = text[prev_end:start]
        newlines = gap.count("\n")
        if newlines and (prev_end + gap.rfind("\n") + 1) in heading_starts:
            scores[i] = _HEADING
        elif newlines >= 2:
            scores[i] = _PARAGRAPH
        elif newlines or (
            prev_end > 0
            and text[prev_end - 1] in _SENTENCE_END
            and (gap or text[prev_end - 1] in _CJK_SENTENCE_END)
        ):
            scores[i] = _SENTENCE
        elif gap:
            scores[i] = _SPACE
    return scores


def _greedy_ranges(scores: list[int], n: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [s, e) of at most ``budget`` tokens, ending at the best boundary."""
    ranges: list[tuple[int, int]] = []
    s = 0
    while s < n:
        if n - s <= budget:
            ranges.append((s, n))
            break
        limit = s + budget  # first token that does not fit
        lowest = s + max(1, budget // 2)
        best, best_score = limit, -1
        for b in range(limit, lowest - 1, -1):
            score = scores[b]
            if score > best_score:
                best, best_score = b, score
                if score == _HEADING:
                    break
        # A heading in the window's second half beats a later, weaker boundary.
        ranges.append((s, best))
        s = best if best_score == _HEADING else _overlap_start(scores, s, best, overlap)
    return ranges


def _overlap_start(scores: list[int], s: int, b: int, overlap: int) -> int:
    """Where the next chunk starts: ``overlap`` tokens back from ``b``, snapped to a boundary."""
    if overlap == 0:
        return b
    lo = max(s + 1, b - overlap)
    for wanted in (_SENTENCE, _SPACE):
        for i in range(lo, b):
            if scores[i] >= wanted:
                return i
    return lo


def _heading_at(headings: list[tuple[int, str]], offset: int, before: str | None) -> str | None:
    current = before
    for pos, title in headings:
        if pos > offset:
            break
        current = title
    return current


def _enforce_limit(
    chunks: list[Chunk], pages: Sequence[PageText], tokenizer: ChunkTokenizer, max_tokens: int
) -> list[Chunk]:
    """Re-count each chunk as the model will see it and split any that came out too long.

    Why: a chunk cut inside a word re-tokenises differently from its slice of the page's tokens.
    """
    counts = tokenizer.count([c.text for c in chunks])
    out: list[Chunk] = []
    for chunk, count in zip(chunks, counts, strict=True):
        if count <= max_tokens:
            out.append(Chunk(0, chunk.text, chunk.page, chunk.char_start, chunk.char_end, chunk.heading, count))
        else:
            out.extend(_split_oversized(chunk, count - max_tokens, tokenizer, max_tokens))
    return out


def _split_oversized(chunk: Chunk, excess: int, tokenizer: ChunkTokenizer, max_tokens: int) -> list[Chunk]:
    spans = tokenizer.offsets(chunk.text)
    budget = max(1, len(spans) - excess - 2)
    while True:
        pieces = []
        for s, e in _greedy_ranges([_SPACE] * len(spans), len(spans), budget, 0):
            a, b = spans[s][0], spans[e - 1][1]
            pieces.append(
                Chunk(0, chunk.text[a:b], chunk.page, chunk.char_start + a, chunk.char_start + b, chunk.heading, 0)
            )
        counts = tokenizer.count([p.text for p in pieces])
        if max(counts) <= max_tokens or budget == 1:
            return [
                Chunk(0, p.text, p.page, p.char_start, p.char_end, p.heading, c)
                for p, c in zip(pieces, counts, strict=True)
            ]
        budget = max(1, budget - (max(counts) - max_tokens) - 1)
