"""What a PDF holds is found by the words people type: filled form fields, right-to-left text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.store.library import Library
from bastion.store.parse_pools import FunctionParsePool
from bastion.store.parsers import parse_file

from .document_factory import arabic_font, write_pdf_form, write_rtl_pdf
from .fakes import HashingEmbedder, drain


def index(tmp_path: Path, folder: Path) -> Library:
    embedder = HashingEmbedder()
    library = Library(tmp_path / "library.db", lambda f: embedder, lambda: FunctionParsePool(parse_file))
    library.add_collection("pdfs", [folder])
    drain(library.sync())
    return library


def test_a_filled_form_is_found_by_its_answers(tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    folder.mkdir()
    write_pdf_form(folder / "permit.pdf")
    with index(tmp_path, folder) as library:
        hit = library.search("Zephyrine Quayle", k=1, mode="bm25")[0]
        assert hit.path.endswith("permit.pdf") and hit.page == 1
        assert "Applicant name: Zephyrine Quayle" in hit.text
        assert library.search("Valparaiso", k=1, mode="bm25")[0].page == 2


# "The national library" and "manuscripts", as typed (logical order); "book" in the Arabic
# presentation forms a shaping producer may leave in the text (initial, medial, final, isolated).
LIBRARY = "المكتبة الوطنية"
MANUSCRIPTS = "المخطوطات"
SHAPED_BOOK = "\ufedb\ufe98\ufe8e\ufe8f"


@pytest.fixture
def font() -> Path:
    found = arabic_font()
    if found is None:
        pytest.skip("no font with Arabic glyphs on this system (fc-list :lang=ar is empty)")
    return found


def test_right_to_left_pdf_text_is_in_logical_order(tmp_path: Path, font: Path) -> None:
    path = write_rtl_pdf(tmp_path / "ar.pdf", font, [f"{LIBRARY}\n{SHAPED_BOOK}"])
    outcome = parse_file(path)
    assert outcome.status == "ok" and outcome.document is not None
    # Drawn in visual order, read back as typed; presentation forms come back as letters.
    assert outcome.document.pages[0].text == f"{LIBRARY}\nكتاب"


def test_an_arabic_word_finds_its_page(tmp_path: Path, font: Path) -> None:
    folder = tmp_path / "arabic"
    folder.mkdir()
    write_rtl_pdf(folder / "catalogue.pdf", font, [LIBRARY, f"{MANUSCRIPTS} {SHAPED_BOOK}"])
    with index(tmp_path, folder) as library:
        hit = library.search(MANUSCRIPTS, k=1, mode="bm25")[0]
        assert hit.path.endswith("catalogue.pdf") and hit.page == 2
        assert library.search("كتاب", k=1, mode="bm25")[0].page == 2
        assert library.search("الوطنية", k=1, mode="bm25")[0].page == 1
