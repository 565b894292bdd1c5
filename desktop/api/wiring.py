"""The API's parts made from the application: its loaded engine, library, embedder, adapters."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from bastion.desktop.answering import ChatEngine
from bastion.desktop.api.local_protocol import AskRequest
from bastion.desktop.api.service import ServiceParts
from bastion.desktop.app import App
from bastion.desktop.assistant import Assistant
from bastion.desktop.default_adapter import default_grounded_adapters
from bastion.desktop.grounding import Retriever
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.store.chats import ChatStore
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
    parts = ServiceParts(
        engine=engine,
        chat_model=info.path.stem,
        sampling=app.settings.sampling(),
        system_prompt=app.settings.system_prompt,
        policy=app.settings.retrieval_policy(),
        open_retriever=open_retriever,
        embedder=embedder,
        embedding_model=Path(folder).name if folder else embedder.id,
        adapter_path=functools.partial(catalog.path_of, base=engine.gguf_info),
        grounded_adapters=default_grounded_adapters(catalog, engine.gguf_info,
                                                    enabled=app.settings.grounded_adapter),
    )

    def make_assistant(request: AskRequest, retriever: Any) -> tuple[Assistant, Any]:
        """The chat use case for one command line ``ask``, as ``bastion ask`` builds it
        in-process: the settings as they are now on disk (``bastion settings set`` since the
        service started counts), the request's overrides, the asked model loaded."""
        from bastion.desktop.settings import Settings

        app.settings = Settings.load(app.paths.settings_file)
        for name, _ in request.adapters:  # an unknown name is refused before a model loads
            catalog.resolve(name)
        if request.max_tokens is not None:
            app.settings.max_tokens = request.max_tokens
        if request.temperature is not None:
            app.settings.temperature = request.temperature
        before = app.loaded_model()
        loaded = app.engine(request.model)
        info = loaded.info
        assert info is not None
        if info is before:  # loaded for an earlier request: this answer paid no load, and a
            # fallback found then was already reported
            info = dataclasses.replace(info, load_s=0.0, fallback_is_new=False)
        adapter_path = functools.partial(catalog.path_of, base=loaded.gguf_info)
        # the API follows
        parts.engine, parts.chat_model, parts.adapter_path = loaded, info.path.stem, adapter_path
        parts.grounded_adapters = default_grounded_adapters(catalog, loaded.gguf_info,
                                                            enabled=app.settings.grounded_adapter)
        parts.policy = app.settings.retrieval_policy()
        if not chat_stores:  # opened on the service thread, which alone writes chats here
            chat_stores.append(ChatStore(app.paths.chats_db))
        assistant = Assistant(
            engine=loaded, chats=chat_stores[0], retriever=retriever,
            system_prompt=app.settings.system_prompt, sampling=app.settings.sampling(),
            policy=app.settings.retrieval_policy(), adapter_path=adapter_path,
            grounded_adapters=default_grounded_adapters(catalog, loaded.gguf_info,
                                                        enabled=app.settings.grounded_adapter))
        return assistant, info

    chat_stores: list[ChatStore] = []

    def close_chats() -> None:
        while chat_stores:
            chat_stores.pop().close()

    def load_model(spec: str) -> ChatEngine:
        """The model ``bastion models unload`` released, loaded again for an API request."""
        loaded = app.engine(spec)
        assert loaded.info is not None
        parts.engine, parts.chat_model = loaded, loaded.info.path.stem
        parts.adapter_path = functools.partial(catalog.path_of, base=loaded.gguf_info)
        parts.grounded_adapters = default_grounded_adapters(catalog, loaded.gguf_info,
                                                            enabled=app.settings.grounded_adapter)
        return loaded

    parts.make_assistant = make_assistant
    parts.close_on_thread = close_chats
    parts.unload_model = app.unload_model
    parts.load_model = load_model
    return parts
