"""What a PDF holds beyond its text layer is found by search: filled form fields."""

from __future__ import annotations

from pathlib import Path

from bastion.store.library import Library
from bastion.store.parse_pools import FunctionParsePool
from bastion.store.parsers import parse_file

from .document_factory import write_pdf_form
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
