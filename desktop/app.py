"""Wiring: the data folder, settings, engine, chat store and library, shared by CLI and GUI.

Everything heavy is created lazily, so ``bastion chats list`` never starts a model and
``bastion ask`` in model mode never loads the embedder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.desktop.assistant import Assistant
from bastion.desktop.default_adapter import default_grounded_adapters
from bastion.desktop.errors import BastionError
from bastion.desktop.paths import DataPaths, data_paths
from bastion.desktop.settings import Settings
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.models.engine import Engine
from bastion.models.engine_fallback import FallbackMemory
from bastion.models.engine_types import LoadInfo
from bastion.models.remote_engine import RemoteEngine, remote_model_name
from bastion.models.remote_http import RemoteEndpoint
from bastion.store.chats import ChatStore


def resolve_model_path(spec: str | None, models_dir: Path) -> Path:
    """The model file for ``spec`` (an id, file name or path); None means the embedded default."""
    from bastion.models.catalog import Catalog, embedded_default_model_path

    if not spec:
        return embedded_default_model_path()
    if remote_model_name(spec) is not None:
        raise BastionError(f"{spec} runs on the remote server and has no file here; this needs a "
                           "local model. Choose one with --model (`bastion models list`).")
    candidate = Path(spec).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    return Catalog(models_dir).resolve(spec).path


def remote_endpoint(settings: Settings) -> RemoteEndpoint:
    """The remote server the settings name, now the one host the egress guard lets through.

    Raises:
        RemoteConfigError: no ``remote_url``, or not an http(s) URL.
        BastionError: its host name cannot be resolved.
    """
    from bastion.desktop.egress import allow_remote_endpoint

    endpoint = RemoteEndpoint.parse(settings.remote_url, settings.remote_token)
    try:
        allow_remote_endpoint(endpoint.host, endpoint.port)
    except OSError as error:
        raise BastionError(f"The name of the remote server in {endpoint.url} cannot be resolved "
                           f"({error}). Check the host name, or set another address with "
                           "`bastion settings set remote_url URL`.") from None
    return endpoint


@dataclass
class App:
    paths: DataPaths = field(default_factory=data_paths)
    settings: Settings = field(init=False)
    _engine: Engine | RemoteEngine | None = field(default=None, init=False)
    _chats: ChatStore | None = field(default=None, init=False)
    _library: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.settings = Settings.load(self.paths.settings_file)

    # -- parts -------------------------------------------------------------------------------

    @property
    def chats(self) -> ChatStore:
        if self._chats is None:
            self._chats = ChatStore(self.paths.chats_db)
        return self._chats

    @property
    def library(self) -> Any:
        """The document library use case (``bastion.desktop.library``), opened on first use."""
        if self._library is None:
            from bastion.desktop.library import open_library

            self._library = open_library(self.paths)
        return self._library

    def engine(self, model: str | None = None, *, reload: bool = False) -> Engine | RemoteEngine:
        """The engine with ``model`` (or the settings' default) loaded.

        ``remote:NAME`` is a model on the configured remote server (``remote_url``); one engine,
        local or remote, is held at a time. ``reload`` loads it again even if it is loaded (new
        context size, threads or GPU layers).
        """
        spec = model or self.settings.default_model
        remote = remote_model_name(spec)
        if remote is not None:
            return self._remote_engine(remote, reload)
        if not isinstance(self._engine, Engine):
            self.unload_model()
            self._engine = Engine(FallbackMemory(self.paths.engine_fallbacks_file))
        wanted = resolve_model_path(spec, self.paths.models_dir)
        info = self._engine.info
        if reload or info is None or info.path != wanted:
            self._engine.load(wanted, self.settings.load_options())
        return self._engine

    def _remote_engine(self, model: str, reload: bool) -> RemoteEngine:
        settings = self.settings
        endpoint = remote_endpoint(settings)
        engine = self._engine
        if not isinstance(engine, RemoteEngine) or engine.endpoint != endpoint:
            self.unload_model()  # free a local model's memory: the answer comes from elsewhere
            engine = RemoteEngine(endpoint)
            self._engine = engine
        engine.read_timeout_s = settings.remote_timeout_s
        info = engine.info
        if reload or info is None or info.name != f"remote:{model}":
            engine.load(model, settings.load_options())
        return engine

    def unload_model(self) -> None:
        """Free the loaded model (the next ``engine()`` call loads one again)."""
        if self._engine is not None:
            self._engine.unload()
            if isinstance(self._engine, RemoteEngine):
                self._engine = None

    def loaded_model(self) -> LoadInfo | None:
        return self._engine.info if self._engine else None

    def assistant(self, model: str | None = None, *, retrieval: bool = True) -> Assistant:
        engine = self.engine(model)
        retriever = None
        if retrieval:
            try:
                retriever = self.library
            except ImportError as error:
                raise BastionError("The document library is not available in this build.") from error
        catalog = AdapterCatalog(self.paths.adapters_dir)
        return Assistant(
            adapter_path=functools.partial(catalog.path_of, base=engine.gguf_info),
            grounded_adapters=default_grounded_adapters(catalog, engine.gguf_info,
                                                        enabled=self.settings.grounded_adapter),
            engine=engine,
            chats=self.chats,
            retriever=retriever,
            system_prompt=self.settings.system_prompt,
            sampling=self.settings.sampling(),
            policy=self.settings.retrieval_policy(),
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._chats is not None:
            self._chats.close()
            self._chats = None
        if self._library is not None:
            close = getattr(self._library, "close", None)
            if close:
                close()
            self._library = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
