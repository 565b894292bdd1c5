"""The API's parts made from the application: its loaded engine, library, embedder, adapters."""

from __future__ import annotations

import functools
from pathlib import Path

from bastion.desktop.api.service import ServiceParts
from bastion.desktop.app import App
from bastion.desktop.grounding import Retriever
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.store.embedder import Embedder


def service_parts(app: App, model: str | None = None) -> ServiceParts:
    """Load ``model`` (or the settings' default) and gather what the API serves with.

    The chat model is named by its file name without ``.gguf``; the embedding model by its
    folder's name. The library is opened later, on the service's thread, sharing the
    embedder the embeddings endpoint uses (one copy in memory).
    """
    from bastion.desktop.library import default_embedder, open_library

    engine = app.engine(model)
    info = engine.info
    assert info is not None  # app.engine() loads or raises
    embedder = default_embedder(None)
    folder = getattr(embedder, "folder", None)

    def embedder_for(collection_folder: Path | None) -> Embedder:
        return embedder if collection_folder is None else default_embedder(collection_folder)

    def open_retriever() -> Retriever:
        return open_library(app.paths, embedder_factory=embedder_for)

    catalog = AdapterCatalog(app.paths.adapters_dir)
    return ServiceParts(
        engine=engine,
        chat_model=info.path.stem,
        sampling=app.settings.sampling(),
        system_prompt=app.settings.system_prompt,
        open_retriever=open_retriever,
        embedder=embedder,
        embedding_model=Path(folder).name if folder else embedder.id,
        adapter_path=functools.partial(catalog.path_of, base=engine.gguf_info),
    )
