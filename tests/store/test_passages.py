"""A cited passage is read back from the index whole, with the text around it on its page."""

from __future__ import annotations

from pathlib import Path

from bastion.store.library import Library
from bastion.store.passages import _join

from .fakes import HashingEmbedder, drain, text_pool


def sentences(tag: str, n: int) -> str:
    return " ".join(f"{tag} sentence number {i} says something plain." for i in range(n))


def index(tmp_path: Path, folder: Path) -> Library:
    embedder = HashingEmbedder(max_tokens=48)
    library = Library(tmp_path / "library.db", lambda f: embedder, text_pool)
    library.add_collection("notes", [folder])
    drain(library.sync())
    return library


def test_the_cited_chunk_comes_back_whole_inside_its_neighbours(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    page_one, page_two = sentences("alpha", 30), sentences("beta", 30) + " The secret is 42."
    (folder / "guide.txt").write_text(f"{page_one}\f{page_two}", encoding="utf-8")
    with index(tmp_path, folder) as library:
        hit = library.search("beta sentence number 15", k=1, mode="bm25")[0]
        assert hit.page == 2
        found = library.passage(hit.path, hit.page, hit.char_start, hit.char_end, "notes")
        assert found is not None and found.found
        assert found.context[found.start:found.end] == hit.text  # the full chunk, not a snippet
        assert len(found.context) > len(hit.text)  # with text around it
        assert found.context in page_two  # only from its own page, in order
        assert found.collection == "notes" and found.roots == [str(folder)]
        assert found.file_path == str(folder / "guide.txt") and found.state == "indexed"
        # Any collection will do when the citation does not name one.
        assert library.passage(hit.path, hit.page, hit.char_start, hit.char_end) == found


def test_a_passage_no_longer_indexed_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text(sentences("gamma", 5), encoding="utf-8")
    with index(tmp_path, folder) as library:
        path = str(folder / "a.txt")
        gone = library.passage(path, None, 10_000, 10_100, "notes")  # past the end: changed
        assert gone is not None and not gone.found and gone.context == ""
        assert library.passage(path, None, 0, 10, "other") is None
        assert library.passage(str(folder / "never.txt"), None, 0, 10) is None
        library.remove_collection("notes")
        assert library.passage(path, None, 0, 10, "notes") is None


def test_overlapping_and_gapped_chunks_join_at_their_offsets() -> None:
    page = "0123456789abcdefghij"
    chunks = [(0, page[0:8], 0, 8), (1, page[5:14], 5, 14), (2, page[19:20], 19, 20)]
    text, start, end = _join(chunks, 6, 12)
    assert text == "0123456789abcd\n…\nj"
    assert text[start:end] == page[6:12]
