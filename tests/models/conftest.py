"""Fixtures of the model tests shared across modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# As in the training process (finetune_model.prepare_environment), torch's threads sleep rather
# than spin while waiting: on shared cores spinning made the fine-tuning tests several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def finetune_base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of the dequantized SmolLM2 for the session: transformers spends ~35 s reading
    the GGUF, the cached safetensors load in ~1 s (see ``finetune_model.load_dequantized``)."""
    return tmp_path_factory.mktemp("finetune-base-cache")
