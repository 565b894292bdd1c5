"""Token-aware chunking with the embedder's own tokenizer.

A chunk never holds more tokens than the embedder reads (special tokens included), so nothing is
silently truncated at embedding time. Chunks prefer to end at headings, then paragraphs, then
sentences or lines, then spaces; only a pathological run with no boundary is cut between tokens.
Consecutive chunks overlap by a few sentences' worth of tokens, except across a heading. Every
chunk keeps its page, its character offsets into that page's text and the nearest heading.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .embedder import ChunkTokenizer
from .parsers.types import PageText

# Part of every collection's index identity: change it whenever chunk boundaries change.
CHUNKER_VERSION = "tok-1"

DEFAULT_OVERLAP_TOKENS = 32

# Characters of a page tokenised at a time, and chunks counted at a time: both bound the memory
# a huge page costs (a 20-million-character line would otherwise hold millions of token objects).
_WINDOW_CHARS = 100_000
_COUNT_BATCH = 256
# How far past a window's end a heading that starts in it may reach (a setext underline).
_HEADING_REACH = 1_000

# Chunks indexed per document at most. A chunk's vector (384 float32 for MiniLM) and text are
# held until the document's swap; 25,000 keeps that near 60 MB, and is about 6 million tokens
# (some 10,000 pages of English; fewer of CJK, where each character is a token).
DEFAULT_MAX_CHUNKS = 25_000

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


def find_headings(text: str, pos: int = 0, endpos: int | None = None) -> list[tuple[int, str]]:
    """Markdown-style headings (ATX ``#`` and setext underlines) as (offset, title), sorted.

    ``pos``/``endpos`` limit the search to part of ``text`` (offsets stay those of ``text``).
    """
    end = len(text) if endpos is None else endpos
    found = [(m.start(), m.group(2).strip()) for m in _ATX.finditer(text, pos, end)]
    found += [
        (m.start(), m.group(1).strip())
        for m in _SETEXT.finditer(text, pos, end)
        if m.group(1).strip()
    ]
    return sorted(found)


def chunk_pages(
    pages: Sequence[PageText],
    tokenizer: ChunkTokenizer,
    max_tokens: int,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Cut a document's pages into chunks that fit the embedder.

    Args:
        pages: The document's text, page by page.
        tokenizer: The embedder's tokenizer (for this thread).
        max_tokens: The embedder's maximum sequence length, special tokens included.
        overlap_tokens: About how many tokens consecutive chunks share.
        max_chunks: Stop after this many chunks (the rest of the text is not tokenised).

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
        room = None if max_chunks is None else max_chunks - len(chunks)
        if room is not None and room <= 0:
            break
        page_chunks, heading = _chunk_page(page, tokenizer, budget, overlap, heading, room)
        chunks.extend(page_chunks)
    chunks = _enforce_limit(chunks, pages, tokenizer, max_tokens)[:max_chunks]
    return [
        Chunk(i, c.text, c.page, c.char_start, c.char_end, c.heading, c.tokens)
        for i, c in enumerate(chunks)
    ]


def chunk_document(
    pages: Sequence[PageText], tokenizer: ChunkTokenizer, max_tokens: int, max_chunks: int
) -> tuple[list[Chunk], bool]:
    """``chunk_pages`` with at most ``max_chunks`` chunks; True when text was left out."""
    chunks = chunk_pages(pages, tokenizer, max_tokens, max_chunks=max_chunks + 1)
    return chunks[:max_chunks], len(chunks) > max_chunks


def _chunk_page(
    page: PageText,
    tokenizer: ChunkTokenizer,
    budget: int,
    overlap: int,
    heading: str | None,
    room: int | None = None,
) -> tuple[list[Chunk], str | None]:
    text = page.text
    tokens = _TokenWindow(text, tokenizer, heading)
    chunks: list[Chunk] = []
    s = 0
    while room is None or len(chunks) < room:
        tokens.fill(s + budget)  # the window needs tokens s .. s + budget
        n = tokens.end
        if s >= n:
            break
        if tokens.exhausted and n - s <= budget:
            e = next_s = n
        else:
            e, score = _best_break(tokens.score, s, budget)
            next_s = e if score == _HEADING else _overlap_start(tokens.score, s, e, overlap)
        start, end = tokens.span(s)[0], tokens.span(e - 1)[1]
        chunks.append(
            Chunk(0, text[start:end], page.page, start, end, tokens.heading_at(start), e - s)
        )
        s = next_s
        tokens.drop_before(s)
    if room is not None and len(chunks) >= room:
        return chunks, tokens.last_heading  # cut short: no later page will be chunked
    tokens.fill(len(text))  # the last heading of the page carries over to the next one
    return chunks, tokens.last_heading


class _TokenWindow:
    """The tokens of one page from index ``base`` on, with the score of breaking before each.

    The page is tokenised ``_WINDOW_CHARS`` at a time, cut at a line break or a space, its
    headings found window by window, and the tokens the chunker is done with are dropped: a
    page of tens of millions of characters costs the memory of a window, not of millions of
    token and heading objects.
    """

    def __init__(self, text: str, tokenizer: ChunkTokenizer, heading: str | None) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self.base = 0
        self.spans: list[tuple[int, int]] = []
        self.scores: list[int] = []
        self.exhausted = not text
        #: The last heading of the text loaded so far (or the one before the page).
        self.last_heading = heading
        self._pos = 0  # characters loaded so far
        self._prev_end: int | None = None
        self._heading_starts: set[int] = set()  # of this window and the one before
        self._upcoming: deque[tuple[int, str]] = deque()  # headings not yet passed by a chunk
        self._current = heading

    @property
    def end(self) -> int:
        """Index one past the last token loaded."""
        return self.base + len(self.spans)

    def span(self, index: int) -> tuple[int, int]:
        """Character span of token ``index``."""
        return self.spans[index - self.base]

    def score(self, index: int) -> int:
        """Score of breaking before token ``index``."""
        return self.scores[index - self.base]

    def heading_at(self, offset: int) -> str | None:
        """The last heading at or before ``offset``; offsets must not decrease between calls."""
        while self._upcoming and self._upcoming[0][0] <= offset:
            self._current = self._upcoming.popleft()[1]
        return self._current

    def fill(self, index: int) -> None:
        """Load tokens until token ``index`` is loaded or the page ends."""
        while not self.exhausted and self.end <= index:
            self._load_window()

    def drop_before(self, index: int) -> None:
        """Forget tokens before ``index`` (in bulk: deleting from a list's head costs its length)."""
        drop = index - self.base
        if drop > 4096 and drop * 2 > len(self.spans):
            del self.spans[:drop]
            del self.scores[:drop]
            self.base = index

    def _load_window(self) -> None:
        text, pos = self.text, self._pos
        n = len(text)
        end = min(pos + _WINDOW_CHARS, n)
        if end < n:
            cut = text.rfind("\n", pos + _WINDOW_CHARS // 2, end)
            if cut == -1:
                cut = text.rfind(" ", pos + _WINDOW_CHARS // 2, end)
            if cut != -1:
                end = cut + 1
        self._pos = end
        self.exhausted = end >= n
        # Headings that start in this window; a setext underline may lie just past its end.
        found = [h for h in find_headings(text, pos, min(n, end + _HEADING_REACH)) if h[0] < end]
        starts = {p for p, _ in found}
        heading_starts = self._heading_starts | starts
        self._heading_starts = starts
        self._upcoming.extend(found)
        if found:
            self.last_heading = found[-1][1]
        for a, b in self.tokenizer.offsets(text[pos:end]):
            start = pos + a
            prev_end = self._prev_end
            self.scores.append(
                _NONE if prev_end is None else _break_score(text, prev_end, start, heading_starts)
            )
            self.spans.append((start, pos + b))
            self._prev_end = pos + b


def _break_score(text: str, prev_end: int, start: int, heading_starts: set[int]) -> int:
    """Score of breaking between a token ending at ``prev_end`` and one at ``start``."""
    gap = text[prev_end:start]
    newlines = gap.count("\n")
    if newlines and (prev_end + gap.rfind("\n") + 1) in heading_starts:
        return _HEADING
    if newlines >= 2:
        return _PARAGRAPH
    if newlines or (
        prev_end > 0
        and text[prev_end - 1] in _SENTENCE_END
        and (gap or text[prev_end - 1] in _CJK_SENTENCE_END)
    ):
        return _SENTENCE
    return _SPACE if gap else _NONE


def _best_break(score: Callable[[int], int], s: int, budget: int) -> tuple[int, int]:
    """The best place to end a chunk that starts at token ``s``, and its score."""
    limit = s + budget  # first token that does not fit
    lowest = s + max(1, budget // 2)
    best, best_score = limit, -1
    for b in range(limit, lowest - 1, -1):
        value = score(b)
        if value > best_score:
            best, best_score = b, value
            # A heading in the window's second half beats a later, weaker boundary.
            if value == _HEADING:
                break
    return best, best_score


def _greedy_ranges(scores: list[int], n: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [s, e) of at most ``budget`` tokens, ending at the best boundary."""
    ranges: list[tuple[int, int]] = []
    s = 0
    while s < n:
        if n - s <= budget:
            ranges.append((s, n))
            break
        best, best_score = _best_break(scores.__getitem__, s, budget)
        ranges.append((s, best))
        s = best if best_score == _HEADING else _overlap_start(scores.__getitem__, s, best, overlap)
    return ranges


def _overlap_start(score: Callable[[int], int], s: int, b: int, overlap: int) -> int:
    """Where the next chunk starts: ``overlap`` tokens back from ``b``, snapped to a boundary."""
    if overlap == 0:
        return b
    lo = max(s + 1, b - overlap)
    for wanted in (_SENTENCE, _SPACE):
        for i in range(lo, b):
            if score(i) >= wanted:
                return i
    return lo


def _enforce_limit(
    chunks: list[Chunk], pages: Sequence[PageText], tokenizer: ChunkTokenizer, max_tokens: int
) -> list[Chunk]:
    """Re-count each chunk as the model will see it and split any that came out too long.

    Why: a chunk cut inside a word re-tokenises differently from its slice of the page's tokens.
    """
    counts: list[int] = []
    for first in range(0, len(chunks), _COUNT_BATCH):  # batches: a tokenizer's encodings are big
        counts += tokenizer.count([c.text for c in chunks[first : first + _COUNT_BATCH]])
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
