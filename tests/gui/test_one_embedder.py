"""The window's two libraries (library thread and core thread) share one embedder."""

from __future__ import annotations

from bastion.desktop.gui.application import real_factories


def test_window_library_and_assistant_share_one_embedder() -> None:
    core_factory, library_factory, _catalog = real_factories()
    library = library_factory()
    session = core_factory()
    try:
        # The library thread indexes with it; the core thread embeds questions with it.
        indexing = library._embedder(None)
        retrieval = session.app.library._embedder(None)
        assert indexing is retrieval
    finally:
        library.close()
        session.app.close()
