"""Fixtures of the model tests shared across modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def finetune_base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of the dequantized SmolLM2 for the session: transformers spends ~35 s reading
    the GGUF, the cached safetensors load in ~1 s (see ``finetune_model.load_dequantized``)."""
    return tmp_path_factory.mktemp("finetune-base-cache")
